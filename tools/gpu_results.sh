#!/usr/bin/env bash
# The numbers of docs/results.md in one command, on a machine with a GPU (issue 4): builds convnet
# (tools/gpu_check.sh --stages build), prepares CIFAR-10 as binary files from the JPEG copy, then
# trains each recipe with each runner for each seed, one process per run:
#   convnet:B   convnet train configs/RECIPE.yaml --set train.backend=B --set train.seed=S ...
#               (B = cuda, cudnn, cuda_tf32, cudnn_tf32; cpu only with --allow-cpu)
#   torch:P     tools/torch_reference.py --recipe RECIPE --precision P --seed-start S --seeds 1
# and appends one JSON object per run to OUT/results.jsonl; at the end tools/results_table.py
# writes the markdown table OUT/table.md. Runs go recipe by recipe, seed by seed, every runner for
# a seed before the next seed, so a cut-short chunk still compares the frameworks.
#
#   tools/gpu_results.sh [--out DIR] [--recipes LIST] [--runners LIST] [--seeds N] [--seed-start S]
#                        [--budget SECONDS] [--done FILE]... [--set KEY=VALUE]... [--torch-args ARGS]
#                        [--data DIR] [--convnet PATH] [--skip-build] [--allow-cpu] [--dry-run]
#
#   --out DIR          results.jsonl, runs.log (every run's output), build.log, table.md (default:
#                      $OUT when set, else ./gpu-results-out); 4 files, so the device tool brings
#                      all back
#   --recipes LIST     comma-separated subset of fast94,fast96,vgg11_bn,vgg16_bn,resnet18,resnet20
#                      (default: fast94,vgg11_bn,vgg16_bn). A ResNet run (resnet18: 200 epochs, about
#                      30 min; resnet20: 164 epochs, about 15 min; both guesses) does not fit the
#                      default --budget: run it with --budget 0, on a machine without the 10-minute
#                      limit or shortened (--set train.epochs=N --torch-args '--epochs N')
#   --runners LIST     default convnet:cuda,convnet:cudnn,torch:fp32; also convnet:cuda_tf32,
#                      convnet:cudnn_tf32, torch:tf32 (and convnet:cpu with --allow-cpu)
#   --seeds N          seeds per recipe and runner (default: 5 for fast94, 2 for fast96 and the
#                      VGGs, 1 for the ResNets)
#   --seed-start S     first seed (default 0)
#   --budget SECONDS   do not start a run that would end later than this many seconds after the
#                      script started (estimated from the last run of the same recipe and runner,
#                      else a guess); skipped runs are listed with the command that resumes them.
#                      Default 540, inside the device tool's 10 minutes per command; 0 = no limit
#   --done FILE        a results.jsonl of an earlier chunk: runs recorded there (recipe, runner,
#                      seed) are skipped (repeatable)
#   --set KEY=VALUE    extra override for the convnet runs (repeatable), e.g. train.max_steps=20
#   --torch-args ARGS  extra arguments for torch_reference.py, e.g. '--epochs 1 --train-limit 4096'
#   --data DIR         CIFAR-10 binary files (default data/cifar10, prepared from $CIFAR_ARCHIVE,
#                      .carry/cifar10-jpeg.tar.xz or ../shared/data/cifar10-jpeg.tar.xz)
#   --convnet PATH     use this convnet binary and skip the build
#   --skip-build       use the existing BUILD_DIR/convnet (default build-gpu) without building
#   --allow-cpu        do not require a GPU (for trying the script itself on a CPU machine)
#   --dry-run          print the runs it would do, and exit
#   -h, --help         this text
#
# Environment: PYTHON (default python3: the interpreter with PyTorch), BUILD_DIR, CUDNN_ROOT and
# CIFAR_ARCHIVE as for tools/gpu_check.sh.
# Exit status: 0 every run finished, 1 a run failed, 2 usage error, 3 no GPU.
set -euo pipefail

die() { echo "gpu_results: error: $*" >&2; exit 2; }
say() { echo "gpu_results: $*"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
start_s="$(date +%s)"
out_dir="${OUT:-$repo/gpu-results-out}"
recipes=(fast94 vgg11_bn vgg16_bn)
runners=(convnet:cuda convnet:cudnn torch:fp32)
seeds=""
seed_start=0
budget=540
done_files=()
convnet_sets=()
torch_args=()
data=""
convnet=""
skip_build=0
allow_cpu=0
dry_run=0
python="${PYTHON:-python3}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) [[ $# -ge 2 ]] || die "--out needs a folder"; out_dir="$2"; shift 2 ;;
    --recipes)
      [[ $# -ge 2 ]] || die "--recipes needs a list, e.g. fast94,vgg16_bn"
      IFS=, read -r -a recipes <<<"$2"; shift 2 ;;
    --runners)
      [[ $# -ge 2 ]] || die "--runners needs a list, e.g. convnet:cuda,torch:fp32"
      IFS=, read -r -a runners <<<"$2"; shift 2 ;;
    --seeds)
      [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--seeds needs a positive number"
      seeds="$2"; shift 2 ;;
    --seed-start)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--seed-start needs a number >= 0"
      seed_start="$2"; shift 2 ;;
    --budget)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--budget needs seconds (0 = no limit)"
      budget="$2"; shift 2 ;;
    --done)
      [[ $# -ge 2 && -f "$2" ]] || die "--done needs an existing results.jsonl"
      done_files+=("$2"); shift 2 ;;
    --set)
      [[ $# -ge 2 && "$2" == *=* ]] || die "--set needs KEY=VALUE"
      convnet_sets+=(--set "$2"); shift 2 ;;
    --torch-args)
      [[ $# -ge 2 ]] || die "--torch-args needs a string"
      read -r -a torch_args <<<"$2"; shift 2 ;;
    --data) [[ $# -ge 2 ]] || die "--data needs a folder"; data="$2"; shift 2 ;;
    --convnet) [[ $# -ge 2 ]] || die "--convnet needs a path"; convnet="$2"; shift 2 ;;
    --skip-build) skip_build=1; shift ;;
    --allow-cpu) allow_cpu=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

for r in "${recipes[@]}"; do
  [[ -f "configs/$r.yaml" ]] || die "--recipes: no configs/$r.yaml"
  case "$r" in
    fast94|fast96|vgg11_bn|vgg16_bn|resnet18|resnet20) ;;
    *) die "--recipes: torch_reference.py knows no recipe '$r' (fast94, fast96, vgg11_bn, vgg16_bn, resnet18, resnet20)" ;;
  esac
done
for x in "${runners[@]}"; do
  case "$x" in
    convnet:cuda|convnet:cudnn|convnet:cuda_tf32|convnet:cudnn_tf32|torch:fp32|torch:tf32) ;;
    convnet:cpu) [[ "$allow_cpu" -eq 1 ]] || die "--runners convnet:cpu needs --allow-cpu" ;;
    *) die "--runners: unknown runner '$x' (convnet:cuda, convnet:cudnn, convnet:cuda_tf32, convnet:cudnn_tf32, torch:fp32, torch:tf32)" ;;
  esac
done

seeds_for() {  # the number of seeds for recipe $1
  if [[ -n "$seeds" ]]; then
    echo "$seeds"
    return
  fi
  case "$1" in
    fast94) echo 5 ;;
    resnet18|resnet20) echo 1 ;;
    *) echo 2 ;;  # fast96, the VGGs
  esac
}

# A first guess at one run's seconds (process start to exit), until a run of the same kind has
# been measured; only used for --budget. fast96 and the ResNets are guesses for an H100, not
# measurements (fast96: airbench96 takes 46 s on an A100 in fp16; the ResNets at batch 128).
guess_seconds() {
  case "$1:$2" in
    fast94:torch:*) echo 40 ;;
    fast94:*) echo 60 ;;
    fast96:*) echo 60 ;;
    vgg11_bn:*) echo 240 ;;
    resnet18:*) echo 1800 ;;  # 200 epochs
    resnet20:*) echo 900 ;;   # 164 epochs
    *) echo 420 ;;            # vgg16_bn
  esac
}

# Was recipe $1, runner $2, seed $3 recorded in a --done file?
already_done() {
  [[ ${#done_files[@]} -gt 0 ]] || return 1
  "$python" - "$1" "$2" "$3" "${done_files[@]}" <<'PY'
import json, sys
recipe, runner, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
for path in sys.argv[4:]:
    for line in open(path):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("recipe") == recipe and r.get("runner") == runner and r.get("seed") == seed and r.get("ok", True):
            sys.exit(0)
sys.exit(1)
PY
}

plan=()  # "recipe runner seed"
for r in "${recipes[@]}"; do
  n="$(seeds_for "$r")"
  for ((s = seed_start; s < seed_start + n; ++s)); do
    for x in "${runners[@]}"; do
      if already_done "$r" "$x" "$s"; then continue; fi
      plan+=("$r $x $s")
    done
  done
done

if [[ "$dry_run" -eq 1 ]]; then
  say "${#plan[@]} runs planned (recipe runner seed, first guess at its seconds):"
  total_guess=0
  for item in "${plan[@]}"; do
    read -r recipe runner seed <<<"$item"
    g="$(guess_seconds "$recipe" "$runner")"
    total_guess=$((total_guess + g))
    printf '  %s  ~%s s\n' "$item" "$g"
  done
  say "about $total_guess s in all by those guesses; --budget $budget s (0 = no limit)"
  exit 0
fi
[[ ${#plan[@]} -gt 0 ]] || { say "nothing to run (every planned run is in a --done file)"; exit 0; }

# --- GPU, build, data ---
gpu_name=""
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  gpu_name="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -n 1)"
elif [[ "$allow_cpu" -eq 0 ]]; then
  echo "gpu_results: no NVIDIA GPU here (nvidia-smi lists none); --allow-cpu to try the script anyway" >&2
  exit 3
fi

mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"
results="$out_dir/results.jsonl"
runs_log="$out_dir/runs.log"
touch "$results" "$runs_log"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
say "GPU: ${gpu_name:-none}; ${#plan[@]} runs; output in $out_dir"

build="${BUILD_DIR:-build-gpu}"
[[ "$build" == /* ]] || build="$repo/$build"
if [[ -z "$convnet" ]]; then
  convnet="$build/convnet"
  if [[ "$skip_build" -eq 0 ]]; then
    say "building convnet in $build (tools/gpu_check.sh --stages build)"
    if ! BUILD_DIR="$build" tools/gpu_check.sh --stages build --out "$scratch/build" >"$scratch/build.out" 2>&1; then
      cp "$scratch/build/build.log" "$out_dir/build.log" 2>/dev/null || true
      cat "$scratch/build.out" >&2
      die "the build failed (see $out_dir/build.log)"
    fi
    cp "$scratch/build/build.log" "$out_dir/build.log" 2>/dev/null || true
  fi
fi
[[ -x "$convnet" ]] || die "no convnet binary at $convnet (build first, or pass --convnet PATH)"
convnet="$(cd "$(dirname "$convnet")" && pwd)/$(basename "$convnet")"

# cuDNN loads its engine libraries at run time from the loader's path: as in tools/gpu_check.sh,
# PyTorch's pip package when cuDNN is not installed system-wide; and carried build dependencies.
if [[ -z "${CUDNN_ROOT:-}" ]] && found="$("$python" -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null)" &&
  [[ -n "$found" ]]; then
  export CUDNN_ROOT="$found"
fi
[[ -z "${CUDNN_ROOT:-}" ]] || export LD_LIBRARY_PATH="$CUDNN_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
deps_lib="$build/deps-root/usr/lib/x86_64-linux-gnu"
if [[ -d "$deps_lib" ]]; then
  export LD_LIBRARY_PATH="$deps_lib:$deps_lib/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

if [[ -z "$data" ]]; then
  data="$repo/data/cifar10"
  archive=""
  for a in "${CIFAR_ARCHIVE:-}" "$repo/.carry/cifar10-jpeg.tar.xz" "$repo/../shared/data/cifar10-jpeg.tar.xz" \
    "$repo/shared/data/cifar10-jpeg.tar.xz"; do
    if [[ -n "$a" && -f "$a" ]]; then archive="$a"; break; fi
  done
  if [[ -n "$archive" ]]; then
    CONVNET="$convnet" tools/prepare_cifar10.sh --from "$archive" --out "$data" --format binary >>"$runs_log" 2>&1 ||
      die "tools/prepare_cifar10.sh failed (see $runs_log)"
  elif [[ ! -f "$data/data_batch_1.bin" ]]; then
    die "no CIFAR-10 binary files in $data and no archive: put cifar10-jpeg.tar.xz in .carry/ or set CIFAR_ARCHIVE"
  fi
fi
[[ -f "$data/data_batch_1.bin" || -f "$data/cifar-10-batches-bin/data_batch_1.bin" ]] ||
  die "--data $data holds no CIFAR-10 binary files (tools/prepare_cifar10.sh --format binary)"
convnet_version="$("$convnet" --version 2>/dev/null | head -n 1 || echo unknown)"
commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
evaluate_has_tta=0
if "$convnet" evaluate --help 2>/dev/null | grep -q -- '--tta'; then evaluate_has_tta=1; fi

# --- one run ---
# Appends the JSON object of a finished convnet run to results.jsonl. Arguments: recipe runner
# seed exit-status process-seconds run-dir log command.
record_convnet() {
  "$python" - "$@" "$gpu_name" "$convnet_version" "$commit" "$scratch/no_tta.json" >>"$results" <<'PY'
import datetime, json, os, re, statistics, sys
(recipe, runner, seed, rc, secs, run_dir, log, command, gpu, version, commit, no_tta) = sys.argv[1:13]
backend = runner.split(":", 1)[1]
text = open(log, errors="replace").read()
rec = dict(recipe=recipe, runner=runner, framework="convnet", backend=backend,
           precision="tf32" if backend.endswith("tf32") else "fp32", seed=int(seed), ok=rc == "0",
           exit_status=int(rc), process_seconds=float(secs), device="cpu" if backend == "cpu" else "cuda",
           gpu=gpu or None, convnet=version, commit=commit,
           command=command, date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
tests = []
metrics = os.path.join(run_dir, "metrics.jsonl")
if os.path.exists(metrics):
    for line in open(metrics):
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("split") == "test":
            tests.append(m)
rec["test_accuracy"] = tests[-1]["accuracy"] if tests else None
rec["test_curve"] = [[t.get("epoch"), t.get("accuracy")] for t in tests]
m = re.findall(r"done: (\d+) steps in ([0-9.]+) s", text)
rec["steps"] = int(m[-1][0]) if m else None
rec["run_seconds"] = float(m[-1][1]) if m else None  # Trainer::run: start of training to the final evaluation
ips = [float(v) for v in re.findall(r"epoch \d+/\d+: train loss [^\n]*?([0-9.]+) images/s", text)]
rec["epoch_images_per_sec"] = ips
rec["median_epoch_images_per_sec"] = statistics.median(ips) if ips else None
rec["test_accuracy_no_tta"] = None
if os.path.exists(no_tta):
    try:
        rec["test_accuracy_no_tta"] = json.load(open(no_tta))["accuracy"]
    except (ValueError, KeyError):
        pass
print(json.dumps(rec))
PY
}

# Adds the runner, exit status and process time to torch_reference.py's JSON lines.
record_torch() {
  "$python" - "$@" >>"$results" <<'PY'
import json, sys
recipe, runner, seed, rc, secs, json_file, command = sys.argv[1:8]
lines = [l for l in open(json_file)] if rc == "0" else []
for line in lines:
    r = json.loads(line)
    r.update(runner=runner, ok=True, exit_status=0, process_seconds=float(secs), command=command)
    print(json.dumps(r))
if not lines:
    print(json.dumps(dict(recipe=recipe, runner=runner, framework="pytorch", seed=int(seed), ok=False,
                          exit_status=int(rc), process_seconds=float(secs), command=command)))
PY
}

declare -A measured=()
failed=0
skipped=()
for item in "${plan[@]}"; do
  read -r recipe runner seed <<<"$item"
  kind="${runner%%:*}"
  arg="${runner#*:}"
  now=$(($(date +%s) - start_s))
  estimate="${measured[$recipe:$runner]:-$(guess_seconds "$recipe" "$runner")}"
  if [[ "$budget" -gt 0 && $((now + estimate)) -gt "$budget" ]]; then
    skipped+=("$item")
    continue
  fi
  log="$scratch/run.log"
  : >"$log"
  rm -f "$scratch/no_tta.json" "$scratch/torch.jsonl"
  if [[ "$kind" == convnet ]]; then
    run_dir="$repo/runs/gpu-results/$recipe-$arg-$seed"
    rm -rf "$run_dir"
    cmd=("$convnet" train "configs/$recipe.yaml" --set "train.seed=$seed" --set "train.backend=$arg"
      --set "output.dir=$run_dir" --set "data.path=$data" "${convnet_sets[@]}")
  else
    cmd=("$python" tools/torch_reference.py --recipe "$recipe" --precision "$arg" --seed-start "$seed" --seeds 1
      --data "$data" --json-out "$scratch/torch.jsonl" "${torch_args[@]}")
  fi
  shown="${cmd[*]}"
  shown="${shown//$repo\//}"
  say "[$((now))s] $recipe $runner seed $seed: $shown"
  t0="$(date +%s.%N)"
  rc=0
  PYTHONUNBUFFERED=1 "${cmd[@]}" >"$log" 2>&1 || rc=$?
  secs="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')"
  measured[$recipe:$runner]="${secs%.*}"
  if [[ "$kind" == convnet && "$rc" -eq 0 && "$evaluate_has_tta" -eq 1 && -f "$run_dir/last.safetensors" ]] &&
    grep -q 'tta: flip' "$run_dir/config.yaml" 2>/dev/null; then
    # the same model without test-time augmentation (not timed)
    "$convnet" evaluate "$run_dir/last.safetensors" --tta none --json --data "$data" >"$scratch/no_tta.json" \
      2>>"$log" || rm -f "$scratch/no_tta.json"
  fi
  {
    echo "=== $recipe $runner seed $seed: $shown"
    cat "$log"
    echo "=== exit $rc after $secs s"
  } >>"$runs_log"
  if [[ "$kind" == convnet ]]; then
    record_convnet "$recipe" "$runner" "$seed" "$rc" "$secs" "$run_dir" "$log" "$shown"
  else
    record_torch "$recipe" "$runner" "$seed" "$rc" "$secs" "$scratch/torch.jsonl" "$shown"
  fi
  if [[ "$rc" -ne 0 ]]; then
    failed=1
    say "  FAILED (exit $rc); end of its output:"
    tail -n 5 "$log" | sed 's/^/  | /'
  else
    say "  done in ${secs%.*} s: $(tail -n 1 "$results" | "$python" -c 'import json,sys; r=json.load(sys.stdin); a=r.get("test_accuracy"); print("test accuracy", "-" if a is None else "%.2f%%" % (100*a))')"
  fi
done

"$python" tools/results_table.py "$results" >"$out_dir/table.md" || say "tools/results_table.py failed"
echo
cat "$out_dir/table.md"
if [[ ${#skipped[@]} -gt 0 ]]; then
  echo
  say "${#skipped[@]} runs did not fit in --budget $budget s: ${skipped[*]}"
  say "resume them with the same arguments plus --done $out_dir/results.jsonl (a copy of it, on a new machine)"
fi
exit "$failed"
