#!/usr/bin/env bash
# GPU verification in one command (issue 3). On a machine with an NVIDIA GPU: builds Release for
# sm_90 into build-gpu/, runs the GPU tests (ctest -L gpu), the convolution harness when built,
# `convnet benchmark --json` (VGG-16 BN at batch 128: our cuda backend against cuDNN in strict
# fp32 and tf32), then one epoch of configs/vgg11_bn.yaml on CIFAR-10 with each GPU backend, and
# prints a short summary table last. A failing stage does not stop the later ones.
#
#   tools/gpu_check.sh [--out DIR] [--stages LIST] [--train-backends LIST] [--train-set KEY=VALUE]...
#                      [--harness-args ARGS] [--repeats N] [--jobs N] [--deps DIR]
#   tools/gpu_check.sh --download-deps DIR
#
#   --out DIR              logs, benchmark.json and summary.txt (default: $OUT when set, else
#                          ./gpu-check-out); at most 8 files, so the device tool brings all back
#   --stages LIST          comma-separated subset of build,test,harness,benchmark,train,sanitize
#                          (default: all but sanitize, which takes long); without build, the
#                          existing build-gpu/ is used. sanitize runs every GPU test executable
#                          under compute-sanitizer memcheck, racecheck and initcheck
#   --train-backends LIST  backends for the one-epoch run (default: cuda,cudnn; cpu is too slow)
#   --train-set KEY=VALUE  extra config override for the epoch runs (repeatable), e.g.
#                          --train-set train.max_steps=100 for a short smoke run
#   --harness-args ARGS    arguments for conv_harness, e.g. '--quick' (default: none)
#   --repeats N            timed repeats per pass in the benchmark (default 10)
#   --jobs N               parallel build jobs (default: all cores)
#   --deps DIR             .deb files of the build dependencies (see --download-deps) for a machine
#                          that lacks them: unpacked into build-gpu/deps-root, never into /
#                          (default: .carry/debs when that folder exists)
#   --download-deps DIR    on a Debian 12 machine with network access: fetch those .deb files
#                          (about 16 MB) into DIR with apt-get download, and exit
#   -h, --help             this text
#
# Environment:
#   CUDNN_ROOT     cuDNN's folder (include/cudnn.h, lib/libcudnn.so*). When unset and cuDNN is not
#                  beside the CUDA toolkit, it is taken from PyTorch's pip package nvidia-cudnn.
#   CIFAR_ARCHIVE  CIFAR-10 archive for tools/prepare_cifar10.sh (default .carry/cifar10-jpeg.tar.xz;
#                  without one, data/cifar10 is used if it is already prepared, else train is skipped)
#   BUILD_DIR      build folder (default build-gpu)
#
# Exit status: 0 every stage passed (or was skipped), 1 a stage failed, 2 usage error, 3 no GPU.
set -euo pipefail

die() { echo "gpu_check: error: $*" >&2; exit 2; }
say() { echo "gpu_check: $*"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

# The Debian 12 packages that tools/install_deps.sh installs for building and testing (Google
# Benchmark is optional and left out), with the run-time libraries a CUDA image may lack.
dep_packages=(
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libyaml-cpp-dev libyaml-cpp0.7 libcli11-dev nlohmann-json3-dev
  libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libopenblas0 libgfortran5 libquadmath0
  libjpeg-dev libjpeg62-turbo-dev libjpeg62-turbo libpng-dev libpng16-16 zlib1g-dev libgtest-dev libgmock-dev
)

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
out_dir="${OUT:-$repo/gpu-check-out}"
all_stages=(build test harness benchmark train sanitize)
stages=(build test harness benchmark train)
train_backends=(cuda cudnn)
train_sets=()
harness_args=()
repeats=10
jobs="$(nproc 2>/dev/null || echo 4)"
deps_dir=""
download_dir=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) [[ $# -ge 2 ]] || die "--out needs a folder"; out_dir="$2"; shift 2 ;;
    --stages)
      [[ $# -ge 2 ]] || die "--stages needs a list, e.g. build,test"
      IFS=, read -r -a stages <<<"$2"
      for s in "${stages[@]}"; do
        [[ " ${all_stages[*]} " == *" $s "* ]] || die "--stages: unknown stage '$s' (known: ${all_stages[*]})"
      done
      shift 2 ;;
    --train-backends)
      [[ $# -ge 2 ]] || die "--train-backends needs a list, e.g. cuda,cudnn"
      IFS=, read -r -a train_backends <<<"$2"; shift 2 ;;
    --train-set)
      [[ $# -ge 2 && "$2" == *=* ]] || die "--train-set needs KEY=VALUE"
      train_sets+=(--set "$2"); shift 2 ;;
    --harness-args)
      [[ $# -ge 2 ]] || die "--harness-args needs a string, e.g. '--quick'"
      read -r -a harness_args <<<"$2"; shift 2 ;;
    --repeats)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -ge 3 ]] || die "--repeats needs a number >= 3"
      repeats="$2"; shift 2 ;;
    --jobs)
      [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--jobs needs a positive number"
      jobs="$2"; shift 2 ;;
    --deps) [[ $# -ge 2 ]] || die "--deps needs a folder of .deb files"; deps_dir="$2"; shift 2 ;;
    --download-deps) [[ $# -ge 2 ]] || die "--download-deps needs a folder"; download_dir="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

if [[ -n "$download_dir" ]]; then
  command -v apt-get >/dev/null 2>&1 || die "--download-deps needs apt-get (a Debian 12 machine)"
  mkdir -p "$download_dir"
  (cd "$download_dir" && apt-get download "${dep_packages[@]}")
  say "fetched ${#dep_packages[@]} packages into $download_dir; carry it and pass --deps $download_dir"
  exit 0
fi

# --- fail fast without a GPU ---
no_gpu() {
  echo "gpu_check: no NVIDIA GPU here: $*" >&2
  echo "gpu_check: this script needs a machine with a GPU and its driver (see docs/gpu-benchmark.md)" >&2
  exit 3
}
command -v nvidia-smi >/dev/null 2>&1 || no_gpu "nvidia-smi is not installed"
gpu_list="$(nvidia-smi -L 2>&1)" || no_gpu "nvidia-smi -L failed: $gpu_list"
grep -q '^GPU ' <<<"$gpu_list" || no_gpu "nvidia-smi lists no GPU: $gpu_list"
gpu_name="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"

build="${BUILD_DIR:-build-gpu}"
[[ "$build" == /* ]] || build="$repo/$build"
mkdir -p "$out_dir" "$build"
out_dir="$(cd "$out_dir" && pwd)"
state="$(mktemp -d)"
trap 'rm -rf "$state"' EXIT

# --- environment: CUDA compiler, cuDNN, carried dependencies ---
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

cudnn_cmake_root=""
have_system_cudnn() {
  local d
  for d in /usr/include /usr/local/cuda/include /usr/include/x86_64-linux-gnu; do
    [[ -f "$d/cudnn.h" ]] && return 0
  done
  return 1
}
if [[ -z "${CUDNN_ROOT:-}" ]] && ! have_system_cudnn && command -v python3 >/dev/null 2>&1; then
  # PyTorch's wheel nvidia-cudnn-cu* holds include/ and lib/ (a namespace package: no __file__).
  if found="$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null)" && [[ -n "$found" ]]; then
    export CUDNN_ROOT="$found"
    say "cuDNN from PyTorch's pip package: CUDNN_ROOT=$CUDNN_ROOT"
  fi
fi
if [[ -n "${CUDNN_ROOT:-}" ]]; then
  [[ -f "$CUDNN_ROOT/include/cudnn.h" ]] || die "CUDNN_ROOT=$CUDNN_ROOT has no include/cudnn.h"
  cudnn_cmake_root="$CUDNN_ROOT"
  if [[ ! -e "$CUDNN_ROOT/lib/libcudnn.so" ]]; then
    # pip wheels ship only libcudnn.so.9, which CMake's find_library does not match: a folder
    # of links with the unversioned name beside them.
    versioned="$(find "$CUDNN_ROOT/lib" -maxdepth 1 -name 'libcudnn.so.[0-9]*' | sort | head -n 1)"
    [[ -n "$versioned" ]] || die "CUDNN_ROOT=$CUDNN_ROOT has no lib/libcudnn.so*"
    cudnn_cmake_root="$build/cudnn-root"
    rm -rf "$cudnn_cmake_root"
    mkdir -p "$cudnn_cmake_root/lib"
    ln -s "$CUDNN_ROOT/include" "$cudnn_cmake_root/include"
    for f in "$CUDNN_ROOT"/lib/*; do ln -s "$f" "$cudnn_cmake_root/lib/"; done
    ln -s "$versioned" "$cudnn_cmake_root/lib/libcudnn.so"
  fi
  # cuDNN loads its engine libraries at run time from the loader's path.
  export LD_LIBRARY_PATH="$CUDNN_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

[[ -n "$deps_dir" || ! -d "$repo/.carry/debs" ]] || deps_dir="$repo/.carry/debs"
if [[ -n "$deps_dir" ]]; then
  compgen -G "$deps_dir/*.deb" >/dev/null || die "--deps $deps_dir holds no .deb files"
  command -v dpkg-deb >/dev/null 2>&1 || die "--deps needs dpkg-deb to unpack the packages"
  deps_root="$build/deps-root"
  rm -rf "$deps_root"
  mkdir -p "$deps_root"
  for f in "$deps_dir"/*.deb; do dpkg-deb -x "$f" "$deps_root"; done
  lib="$deps_root/usr/lib/x86_64-linux-gnu"
  # Debian points libopenblas.so and cblas.h at the pthread variant with update-alternatives,
  # which unpacking does not run: the same links, inside the prefix.
  if [[ -d "$lib/openblas-pthread" ]]; then
    for f in "$lib"/openblas-pthread/libopenblas*.so*; do ln -sf "$f" "$lib/"; done
    mkdir -p "$deps_root/usr/include/x86_64-linux-gnu"
    for f in "$deps_root"/usr/include/x86_64-linux-gnu/openblas-pthread/*.h; do
      ln -sf "$f" "$deps_root/usr/include/x86_64-linux-gnu/"
    done
  fi
  export CMAKE_PREFIX_PATH="$deps_root/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export LD_LIBRARY_PATH="$lib:$lib/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "build dependencies from $deps_dir unpacked into $deps_root"
fi

# --- stages ---
# Each runs in a subshell with errexit, its output in its own log under $out_dir. A stage calls
# skip REASON to end early without failing, and writes its one-line result to $state/detail.
skip() { echo "$*" >"$state/skip"; exit 0; }
detail() { echo "$*" >"$state/detail"; }
log_to() { echo "$1" >"$state/log"; }  # the stage's log, whose tail a failure shows
need() { [[ -x "$1" ]] || { echo "$1 is missing (did the build stage fail?)" >&2; return 1; }; }

stage_build() {
  local log="$out_dir/build.log"
  log_to "$log"
  local args=(-S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90)
  [[ -z "$cudnn_cmake_root" ]] || args+=("-DCUDNN_ROOT=$cudnn_cmake_root")
  echo "+ cmake ${args[*]}" >"$log"
  cmake "${args[@]}" >>"$log" 2>&1
  if ! grep -q 'convnet: CUDA .*cuDNN' "$log"; then
    echo "configure did not find CUDA and cuDNN (see $log); set CUDNN_ROOT to cuDNN's folder" >&2
    return 1
  fi
  cmake --build "$build" -j "$jobs" >>"$log" 2>&1
  detail "$(grep -o 'convnet: CUDA .*' "$log" | head -n 1 | sed 's/^convnet: //')"
}

stage_test() {
  local log="$out_dir/ctest.log"
  log_to "$log"
  ctest --test-dir "$build" -L gpu --output-on-failure --no-tests=error --timeout 600 >"$log" 2>&1
}

stage_sanitize() {
  local tool exe sanitizer log="$out_dir/sanitize.log"
  sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
  [[ -x "$sanitizer" ]] || skip "compute-sanitizer not found"
  log_to "$log"
  : >"$log"
  local failed=0
  for exe in "$build"/tests/gpu_*_test "$build"/tests/cuda_runtime_test; do
    [[ -x "$exe" ]] || continue
    for tool in memcheck racecheck initcheck; do
      echo "+ compute-sanitizer --tool $tool $(basename "$exe")" >>"$log"
      "$sanitizer" --tool "$tool" --error-exitcode 99 "$exe" --gtest_brief=1 >>"$log" 2>&1 || failed=1
    done
  done
  return "$failed"
}

stage_harness() {
  local harness="$build/cuda/harness/conv_harness"
  [[ -x "$harness" ]] || harness="$build/conv_harness"  # where cuda/harness/CMakeLists.txt puts it
  [[ -x "$harness" ]] || skip "conv_harness not built"
  log_to "$out_dir/harness.log"
  echo "+ $harness ${harness_args[*]}" >"$out_dir/harness.log"
  "$harness" "${harness_args[@]}" >>"$out_dir/harness.log" 2>&1
}

stage_benchmark() {
  need "$build/convnet"
  log_to "$out_dir/benchmark.log"
  # --backend cuda: never fall back to a (very slow) cpu run; --compare defaults to cudnn,cudnn_tf32.
  "$build/convnet" benchmark --backend cuda --json --repeats "$repeats" \
    >"$out_dir/benchmark.json" 2>"$out_dir/benchmark.log"
}

stage_train() {
  need "$build/convnet"
  local log="$out_dir/train.log" data="$repo/data/cifar10"
  local archive="${CIFAR_ARCHIVE:-$repo/.carry/cifar10-jpeg.tar.xz}"
  : >"$log"
  log_to "$log"
  if [[ -n "${CIFAR_ARCHIVE:-}" && ! -f "$CIFAR_ARCHIVE" ]]; then
    echo "CIFAR_ARCHIVE=$CIFAR_ARCHIVE: no such file" >&2
    return 1
  fi
  if [[ -f "$archive" ]]; then
    CONVNET="$build/convnet" tools/prepare_cifar10.sh --from "$archive" --out "$data" --format binary >>"$log" 2>&1
  elif [[ ! -d "$data" ]]; then
    skip "no CIFAR-10: put cifar10-jpeg.tar.xz in .carry/ or set CIFAR_ARCHIVE"
  fi
  local failed=0 b start rc
  for b in "${train_backends[@]}"; do
    local run="$build/gpu-check-runs/$b"
    rm -rf "$run"
    echo "=== one epoch of configs/vgg11_bn.yaml on $b" >>"$log"
    start="$(date +%s%N)"
    rc=0
    "$build/convnet" train configs/vgg11_bn.yaml --set train.epochs=1 --set "train.backend=$b" \
      --set "output.dir=$run" --set "data.path=$data" "${train_sets[@]}" >>"$log" 2>&1 || rc=$?
    echo "$rc $((($(date +%s%N) - start) / 1000000))" >"$state/train-$b"  # exit status, wall ms
    if [[ -f "$run/metrics.jsonl" ]]; then
      echo "--- $run/metrics.jsonl" >>"$log"
      cat "$run/metrics.jsonl" >>"$log"
      cp "$run/metrics.jsonl" "$state/metrics-$b.jsonl"
    fi
    [[ "$rc" -eq 0 ]] || failed=1
  done
  return "$failed"
}

declare -A status=() details=() seconds=()
run_stage() {
  local name="$1" rc start
  rm -f "$state/skip" "$state/detail" "$state/log"
  say "stage $name ..."
  start="$(date +%s)"
  set +e
  (
    set -e
    "stage_$name"
  ) 2>"$state/stderr"
  rc=$?
  set -e
  seconds[$name]=$(($(date +%s) - start))
  if [[ "$rc" -ne 0 ]]; then
    # Why: the stage's own message, else the end of its log.
    local why="$state/stderr"
    [[ -s "$why" || ! -f "$state/log" ]] || why="$(cat "$state/log")"
    status[$name]="FAIL"
    details[$name]="exit $rc: $(grep -v '^[[:space:]]*$' "$why" 2>/dev/null | tail -n 1 | cut -c 1-160)"
    say "stage $name FAILED (exit $rc after ${seconds[$name]} s); end of $(basename "$why"):"
    tail -n 20 "$why" 2>/dev/null | sed 's/^/  | /'
  elif [[ -f "$state/skip" ]]; then
    status[$name]="SKIP"
    details[$name]="$(cat "$state/skip")"
    say "stage $name skipped: ${details[$name]}"
  else
    status[$name]="PASS"
    details[$name]="$(cat "$state/detail" 2>/dev/null || true)"
    say "stage $name passed in ${seconds[$name]} s"
  fi
  write_summary >"$out_dir/summary.txt"  # kept current, so a run cut short still leaves one
}

# --- summary ---
write_summary() {
  local s
  echo "gpu_check summary: ${gpu_name:-unknown GPU}; commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf '%-10s %-5s %6s  %s\n' stage state "time" detail
  for s in "${stages[@]}"; do
    [[ -n "${status[$s]:-}" ]] || continue
    printf '%-10s %-5s %5ss  %s\n' "$s" "${status[$s]}" "${seconds[$s]}" "${details[$s]}"
  done
  if [[ -f "$out_dir/ctest.log" ]]; then
    local line
    line="$(grep -E 'tests passed, [0-9]+ tests? failed out of' "$out_dir/ctest.log" | tail -n 1 || true)"
    echo "gpu tests: ${line:-no result line in ctest.log}"
  fi
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$out_dir/benchmark.json" "$state" "${train_backends[@]}" <<'PY' || echo "(summary of benchmark and epochs failed)"
import json, os, sys

bench_path, state = sys.argv[1], sys.argv[2]
backends = sys.argv[3:]

def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}x"

if os.path.exists(bench_path) and os.path.getsize(bench_path) > 0:
    try:
        b = json.load(open(bench_path))
    except ValueError as e:
        b = None
        print(f"benchmark.json unreadable: {e}")
    if b:
        print(f"benchmark: {b['model']}, batch {b['batch_size']}, {b['backend']} vs "
              f"{', '.join(b.get('compare_backends', [])) or 'nothing'} (ratio = their time / ours; > 1: ours faster)")
        conv = b["convolution"]
        for c in conv.get("compare", []):
            target = "  (target >= 0.70x)" if c["backend"] == "cudnn" else ""
            print(f"  conv, 3 passes, all layers: ours {conv['total_ms']:.2f} ms, {c['backend']} "
                  f"{c['total_ms']:.2f} ms: {fmt_ratio(c['ratio'])}{target}")
        steps = b.get("train_steps", [])
        for s in steps:
            target = "  (target >= 0.60x)" if s["backend"] == "cudnn" else ""
            ratio = "" if s is steps[0] else f", ours/theirs {fmt_ratio(s['ratio'])}{target}"
            print(f"  training step on {s['backend']}: {s['images_per_sec']:.0f} images/s{ratio}")
        copy = b.get("copy_bandwidth")
        if copy:
            mem = [r for r in b["layers"] if r.get("bound") == "memory" and "pct_of_copy_bandwidth" in r]
            below = [r for r in mem if r["pct_of_copy_bandwidth"] < 70]
            line = (f"  copy {copy['gbytes_per_sec']:.0f} GB/s; memory-bound passes under 70% of it: "
                    f"{len(below)} of {len(mem)}")
            if below:
                worst = min(below, key=lambda r: r["pct_of_copy_bandwidth"])
                line += f" (lowest: {worst['layer']} {worst['pass']} {worst['pct_of_copy_bandwidth']:.0f}%)"
            print(line)

rows = []
for be in backends:
    path = os.path.join(state, f"train-{be}")
    if not os.path.exists(path):
        continue
    rc, wall_ms = open(path).read().split()
    acc = ips = None
    mpath = os.path.join(state, f"metrics-{be}.jsonl")
    if os.path.exists(mpath):
        for line in open(mpath):
            try:
                m = json.loads(line)
            except ValueError:
                continue
            if m.get("split") == "train":
                ips = m.get("images_per_sec")
            elif m.get("split") == "test":
                acc = m.get("accuracy")
    rows.append((be, "ok" if rc == "0" else f"exit {rc}", int(wall_ms) / 1000, ips, acc))
if rows:
    print("one epoch of configs/vgg11_bn.yaml:")
    print(f"  {'backend':<12} {'result':<8} {'wall s':>8} {'train img/s':>12} {'test acc':>9}")
    for be, res, secs, ips, acc in rows:
        ips_s = "-" if ips is None else f"{ips:.0f}"
        acc_s = "-" if acc is None else f"{100 * acc:.2f}%"
        print(f"  {be:<12} {res:<8} {secs:>8.1f} {ips_s:>12} {acc_s:>9}")
PY
  fi
  local failed=()
  for s in "${stages[@]}"; do [[ "${status[$s]:-}" != FAIL ]] || failed+=("$s"); done
  if [[ ${#failed[@]} -eq 0 ]]; then
    echo "RESULT: PASS"
  else
    echo "RESULT: FAIL (${failed[*]})"
  fi
}

say "$(echo "$gpu_list" | head -n 1); output in $out_dir"
for s in "${stages[@]}"; do run_stage "$s"; done
echo
cat "$out_dir/summary.txt"
grep -q '^RESULT: PASS' "$out_dir/summary.txt"
