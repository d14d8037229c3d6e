#!/usr/bin/env bash
# GPU verification in one command (issue 3). On a machine with an NVIDIA GPU: builds Release for
# sm_90 into build-gpu/ (only convnet, conv_harness and the GPU test executables), runs the GPU
# tests (ctest -L gpu), the convolution harness, `convnet benchmark --json` (VGG-16 BN at batch 128:
# our cuda backend against cuDNN in strict fp32 and tf32, then our cuda_tf32 backend, the v4
# tensor-core kernels, against cuDNN in tf32), then a fraction of an epoch of
# configs/vgg11_bn.yaml on CIFAR-10 with each GPU backend, and prints a short summary table last.
# A failing stage does not stop the later ones. Every command runs under its stage's deadline (a
# stage past it fails), and a stage whose deadline no longer fits in the profile's budget, counted
# from the start, is skipped: 480 s for the full profile, 240 s for --quick, sized for a bare
# checkout on a 16-core machine, so that the check fits one 10-minute call of the device tool with
# time left for the machine to start. A setup stage (cuDNN links, carried .deb files) comes first.
#
#   tools/gpu_check.sh [--quick] [--dry-run] [--out DIR] [--stages LIST] [--train-backends LIST]
#                      [--train-set KEY=VALUE]... [--harness-args ARGS] [--repeats N] [--jobs N]
#                      [--deps DIR]
#   tools/gpu_check.sh --download-deps DIR
#
#   --quick                the 240 s profile: conv_harness --quick, 3 benchmark repeats,
#                          train.epochs=0.05 (20 steps); the full profile runs the whole harness,
#                          10 repeats and train.epochs=0.2 (78 steps). Both end each run with the
#                          test-set evaluation
#   --dry-run              print every command (lines starting "+ "), each stage's deadline
#                          ("deadline STAGE SECONDS") and the build targets ("targets ..."), then
#                          exit 0 without building or running anything; needs no GPU
#   --out DIR              logs, benchmark.json, benchmark_tf32.json (the bf16 run's JSON is at the
#                          end of benchmark.log) and summary.txt (default:
#                          $OUT when set, else ./gpu-check-out); at most 8 files, so the device
#                          tool brings all back
#   --stages LIST          comma-separated subset of build,test,harness,benchmark,train,sanitize
#                          (default: all but sanitize); without build, the existing build-gpu/ is
#                          used. sanitize runs every GPU test executable under compute-sanitizer
#                          memcheck, initcheck and racecheck (gpu_conv_random_test on 40 of its
#                          400 problems, and not under racecheck; gpu_conv_tc_test on 40, and
#                          under racecheck on 8 without its VGG layers), its log after ctest's in
#                          ctest.log
#   --train-backends LIST  backends for the training runs (default: cuda,cudnn; cpu is too slow)
#   --train-set KEY=VALUE  extra config override for the training runs (repeatable, applied last),
#                          e.g. --train-set train.max_steps=10
#   --harness-args ARGS    arguments for conv_harness (default: none; --quick: '--quick')
#   --repeats N            timed repeats per pass in the benchmark (default 10; --quick: 3)
#   --jobs N               parallel build jobs (default: all cores); ctest runs half as many
#   --deps DIR             .deb files of the build dependencies (see --download-deps) for a machine
#                          that lacks them: unpacked into build-gpu/deps-root, never into /
#                          (default: .carry/debs when that folder exists)
#   --download-deps DIR    on a Debian 12 machine with network access: fetch those .deb files
#                          (about 16 MB) into DIR with apt-get download, and exit
#   -h, --help             this text
#
# Environment:
#   CUDNN_ROOT     cuDNN's folder (include/cudnn.h, lib/libcudnn.so*). When unset and cuDNN is not
#                  beside the CUDA toolkit, it is taken from PyTorch's pip packages, and their
#                  cuBLAS and cuDNN library folders are put on LD_LIBRARY_PATH.
#   CIFAR_ARCHIVE  CIFAR-10 archive for tools/prepare_cifar10.sh (default .carry/cifar10-jpeg.tar.xz;
#                  without one, data/cifar10 is used if it is already prepared, else train is skipped)
#   BUILD_DIR      build folder, relative to the repository root (default build-gpu)
#   CONVNET_REQUIRE_GPU=1 is set for the test, harness and sanitize stages: a GPU test or the
#                  harness that finds no device then fails instead of skipping.
#
# Exit status: 0 every stage passed (or was skipped), 1 a stage failed, 2 usage error, 3 no GPU
# (never in --dry-run).
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
t0="$(date +%s)"
out_dir="${OUT:-$repo/gpu-check-out}"
all_stages=(build test harness benchmark train sanitize)
stages=(build test harness benchmark train)
train_backends=(cuda cudnn)
train_sets=()
harness_args=()
harness_args_set=false
repeats=""
jobs="$(nproc 2>/dev/null || echo 4)"
deps_dir=""
download_dir=""
profile=full
dry_run=false

while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) profile=quick; shift ;;
    --dry-run) dry_run=true; shift ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a folder"; out_dir="$2"; shift 2 ;;
    --stages)
      [[ $# -ge 2 && -n "$2" ]] || die "--stages needs a list, e.g. build,test"
      IFS=, read -r -a stages <<<"$2"
      for s in "${stages[@]}"; do
        [[ " ${all_stages[*]} " == *" $s "* ]] || die "--stages: unknown stage '$s' (known: ${all_stages[*]})"
      done
      shift 2 ;;
    --train-backends)
      [[ $# -ge 2 && "$2" =~ ^[a-z0-9_]+(,[a-z0-9_]+)*$ ]] || die "--train-backends needs a list, e.g. cuda,cudnn"
      IFS=, read -r -a train_backends <<<"$2"; shift 2 ;;
    --train-set)
      [[ $# -ge 2 && "$2" == *=* ]] || die "--train-set needs KEY=VALUE"
      train_sets+=(--set "$2"); shift 2 ;;
    --harness-args)
      [[ $# -ge 2 ]] || die "--harness-args needs a string, e.g. '--quick'"
      read -r -a harness_args <<<"$2"; harness_args_set=true; shift 2 ;;
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

# --- profile: budget and per-stage deadlines, in seconds ---
# The build dominates. Measured on the 2-core CPU machine (this target list only, Release, sm_90,
# Ninja, no ccache, another build running beside it): configure 7 s, build 4 min 49 s wall and
# 330 s of CPU (user + system) for 125 steps, 13 of them nvcc compiles; the longest step,
# tools/main.cpp, took 35 s of wall time under that load, about 20 s alone. On 16 cores:
# 330 / 16 = 21 s if perfectly parallel, at least the longest compile plus the links, so about
# 30-40 s, 45-50 s with configure. The build deadlines are 2 to 4 times that, for a slower or
# busier machine. The other stages have not been timed on a GPU yet: their deadlines are generous
# guesses from the work they do (about 70 GPU test processes, mostly small; VGG-16 passes on three
# backends, then VGG-16 passes on two in tf32; 20 or 78 VGG-11 steps and a test-set pass, mostly
# start-up). The deadlines of the default stages sum to the budget less 10 s for the gaps between
# stages.
declare -A deadline=()
case "$profile" in
  full)
    budget=480
    deadline=([setup]=20 [build]=165 [test]=90 [harness]=50 [benchmark]=60)
    train_prep=25 train_per_backend=30  # data preparation once, then each backend's run
    deadline[sanitize]=260              # opt-in: fits the budget with setup and build, not with all
    train_epochs=0.2                    # 78 of 391 steps
    : "${repeats:=10}" ;;
  quick)
    budget=240
    deadline=([setup]=15 [build]=90 [test]=40 [harness]=15 [benchmark]=25)
    train_prep=15 train_per_backend=15
    deadline[sanitize]=110
    train_epochs=0.05                   # 20 steps
    : "${repeats:=3}"
    $harness_args_set || harness_args=(--quick) ;;
esac
deadline[train]=$((train_prep + ${#train_backends[@]} * train_per_backend))

build="${BUILD_DIR:-build-gpu}"
build_abs="$build"
[[ "$build" == /* ]] || build_abs="$repo/$build"
# The build targets: the program, the harness, and one executable per GPU test file (the same glob
# as tests/CMakeLists.txt), so a new GPU test is built and sanitized without editing this script.
gpu_tests=()
for f in "$repo"/tests/gpu/*_test.cpp; do gpu_tests+=("$(basename "$f" .cpp)"); done
[[ ${#gpu_tests[@]} -gt 0 ]] || die "no tests/gpu/*_test.cpp found in $repo"
targets=(convnet conv_harness "${gpu_tests[@]}")
ctest_jobs=$(((jobs + 1) / 2))  # each GPU test also runs a multithreaded cpu reference

state="$(mktemp -d)"
trap 'rm -rf "$state"' EXIT
exec 3>&1  # the terminal, for the "+ command" lines, wherever a stage's output goes
# A dry run writes nothing outside its scratch folder: the logs its commands would fill go there.
requested_out="$out_dir"
if $dry_run; then
  out_dir="$state/out"
  mkdir -p "$out_dir"
fi
dry() { $dry_run; }
note() { echo "# $*" >&3; }  # in a dry run: what a real run would do here

# --- commands ---
# Prints a command as a shell would take it: plain words as they are, the rest quoted.
quote() {
  local w words=()
  for w in "$@"; do
    if [[ "$w" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then words+=("$w"); else words+=("$(printf '%q' "$w")"); fi
  done
  echo "${words[*]}"
}

# Every command that builds, tests or measures goes through run: it prints "+ COMMAND" on the
# terminal and in the stage's log, and runs it under what is left of the stage's deadline
# ($stage_end); `cap=N run ...` also limits this one command to N seconds. Leading NAME=VALUE
# words set the command's environment, as in a shell. In --dry-run it only prints. When the stage
# deadline passes, the command is sent TERM (KILL 10 s later) and the stage ends at once: run is
# called only inside a stage's subshell, which its exit ends.
stage_end=0
stage_log=""
run() {
  local line now left limit rc=0 start
  line="+ $(quote "$@")${cap:+  # at most $cap s}"
  echo "$line" >&3
  dry && return 0
  [[ -z "$stage_log" ]] || echo "$line" >>"$stage_log"
  now="$(date +%s)"
  left=$((stage_end - now))
  limit="$left"
  [[ -z "${cap:-}" || "$cap" -ge "$left" ]] || limit="$cap"
  if [[ "$limit" -le 0 ]]; then
    touch "$state/deadline"
    exit 124
  fi
  start="$now"
  timeout --signal=TERM --kill-after=10 "$limit" env "$@" 3>&- || rc=$?
  if [[ ( "$rc" -eq 124 || "$rc" -eq 137 ) && $(($(date +%s) - start)) -ge "$limit" ]]; then
    if [[ "$limit" -eq "$left" ]]; then
      touch "$state/deadline"
      exit 124
    fi
    echo "stopped at its ${limit} s limit: $(quote "$@" | cut -c 1-120)" >&2
  fi
  return "$rc"
}

# --- fail fast without a GPU ---
no_gpu() {
  echo "gpu_check: no NVIDIA GPU here: $*" >&2
  echo "gpu_check: this script needs a machine with a GPU and its driver (see docs/gpu-benchmark.md)" >&2
  exit 3
}
gpu_name=""
gpu_list=""
if dry; then
  note "dry run: no GPU check (nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total)"
else
  command -v nvidia-smi >/dev/null 2>&1 || no_gpu "nvidia-smi is not installed"
  gpu_list="$(nvidia-smi -L 2>&1)" || no_gpu "nvidia-smi -L failed: $gpu_list"
  grep -q '^GPU ' <<<"$gpu_list" || no_gpu "nvidia-smi lists no GPU: $gpu_list"
  gpu_name="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 1 || true)"
  mkdir -p "$out_dir" "$build_abs"
  out_dir="$(cd "$out_dir" && pwd)"
fi

# What this script writes into $out_dir: 8 files at most, the device tool's limit (so the sanitize
# stage writes into ctest.log, after the test stage's run). A rerun into the same folder starts
# from none of them, so a summary never reads an earlier run's file.
outputs=(summary.txt build.log ctest.log harness.log benchmark.json benchmark_tf32.json benchmark.log train.log)
for f in "${outputs[@]}"; do rm -f "${out_dir:?}/$f"; done

# --- environment: CUDA compiler, cuDNN, carried dependencies ---
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

prepend_library_path() { export LD_LIBRARY_PATH="$1${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; }

cudnn_cmake_root=""
cudnn_source="not found by this script (set CUDNN_ROOT)"
have_system_cudnn() {
  local d
  for d in /usr/include /usr/local/cuda/include /usr/include/x86_64-linux-gnu; do
    [[ -f "$d/cudnn.h" ]] && return 0
  done
  return 1
}
if [[ -n "${CUDNN_ROOT:-}" ]]; then
  cudnn_source="CUDNN_ROOT=$CUDNN_ROOT"
elif have_system_cudnn; then
  cudnn_source="installed beside the CUDA toolkit or in /usr"
elif command -v python3 >/dev/null 2>&1; then
  # PyTorch's wheels are parts of one namespace package, nvidia (no __file__), possibly spread over
  # several site-packages folders. cuDNN has its own nvidia/cudnn/; cuBLAS is in nvidia/cublas/ in
  # the CUDA 12 wheels and in the shared nvidia/cu13/ (or cu12/) in the CUDA 13 ones.
  pip_libs=()
  while IFS= read -r d; do
    [[ -n "$d" ]] || continue
    for sub in cudnn cu13 cu12; do
      [[ -n "${CUDNN_ROOT:-}" || ! -f "$d/$sub/include/cudnn.h" ]] || export CUDNN_ROOT="$d/$sub"
    done
    for sub in cu13/lib cu12/lib cublas/lib cudnn/lib; do
      [[ ! -d "$d/$sub" ]] || pip_libs+=("$d/$sub")
    done
  done <<<"$(python3 -c 'import nvidia; print("\n".join(nvidia.__path__))' 2>/dev/null || true)"
  if [[ -n "${CUDNN_ROOT:-}" ]]; then
    # The loader needs cuDNN's engine libraries (opened at run time) and the wheels' cuBLAS, the
    # one that cuDNN was built with; the folders in the order above, the first searched first.
    for ((i = ${#pip_libs[@]} - 1; i >= 0; i--)); do prepend_library_path "${pip_libs[$i]}"; done
    cudnn_source="PyTorch's pip packages ($CUDNN_ROOT); LD_LIBRARY_PATH += $(IFS=:; echo "${pip_libs[*]}")"
    say "cuDNN from $cudnn_source"
  fi
fi
cudnn_links=""  # the pip wheels' lib/libcudnn.so.9, which needs a link with the unversioned name
if [[ -n "${CUDNN_ROOT:-}" ]]; then
  [[ -f "$CUDNN_ROOT/include/cudnn.h" ]] || die "CUDNN_ROOT=$CUDNN_ROOT has no include/cudnn.h"
  cudnn_cmake_root="$CUDNN_ROOT"
  if [[ ! -e "$CUDNN_ROOT/lib/libcudnn.so" ]]; then
    cudnn_links="$(find "$CUDNN_ROOT/lib" -maxdepth 1 -name 'libcudnn.so.[0-9]*' | sort | head -n 1)"
    [[ -n "$cudnn_links" ]] || die "CUDNN_ROOT=$CUDNN_ROOT has no lib/libcudnn.so*"
    cudnn_cmake_root="$build_abs/cudnn-root"
  fi
  # cuDNN loads its engine libraries at run time from the loader's path.
  [[ ":${LD_LIBRARY_PATH:-}:" == *":$CUDNN_ROOT/lib:"* ]] || prepend_library_path "$CUDNN_ROOT/lib"
fi

[[ -n "$deps_dir" || ! -d "$repo/.carry/debs" ]] || deps_dir="$repo/.carry/debs"
deps_root="$build_abs/deps-root"
if [[ -n "$deps_dir" ]]; then
  compgen -G "$deps_dir/*.deb" >/dev/null || die "--deps $deps_dir holds no .deb files"
  command -v dpkg-deb >/dev/null 2>&1 || die "--deps needs dpkg-deb to unpack the packages"
  # The setup stage unpacks them; CMake and the loader look there first.
  lib="$deps_root/usr/lib/x86_64-linux-gnu"
  export CMAKE_PREFIX_PATH="$deps_root/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  prepend_library_path "$lib:$lib/openblas-pthread"
fi

# --- stages ---
# Each runs in a subshell with errexit, its output in its own log under $out_dir. A stage calls
# skip REASON to end early without failing, and writes its one-line result to $state/detail.
skip() { echo "$*" >"$state/skip"; exit 0; }
detail() { echo "$*" >"$state/detail"; }
log_to() { stage_log="$1"; : >"$1"; echo "$1" >"$state/log"; }  # the stage's log, whose tail a failure shows
# A log two stages share (ctest.log: test, sanitize), emptied once, above: each stage appends.
log_append() { stage_log="$1"; touch "$1"; echo "$1" >"$state/log"; }
need() { dry || [[ -x "$1" ]] || { echo "$1 is missing (did the build stage fail?)" >&2; return 1; }; }

# convnet --version: toolkit, runtime and driver versions, and the cuDNN and cuBLAS that the
# loader actually found (each library reports its own), then one line per GPU. For the summary.
record_versions() {
  run "$build/convnet" --version >"$state/versions" 2>&1
  cat "$state/versions"
}

# Files the build needs that are not in the checkout: a folder of links that gives CMake the pip
# wheel's libcudnn.so.9 under the name it looks for, and the carried .deb files unpacked (never
# into /).
stage_setup() {
  log_to "$state/setup.log"
  local did=""
  if [[ -n "$cudnn_links" ]]; then
    run rm -rf "$cudnn_cmake_root"
    run mkdir -p "$cudnn_cmake_root/lib"
    run ln -s "$CUDNN_ROOT/include" "$cudnn_cmake_root/include"
    run ln -s -t "$cudnn_cmake_root/lib" "$CUDNN_ROOT"/lib/*
    run ln -s "$cudnn_links" "$cudnn_cmake_root/lib/libcudnn.so"
    did="cuDNN links in $cudnn_cmake_root"
  fi
  if [[ -n "$deps_dir" ]]; then
    run rm -rf "$deps_root"
    run mkdir -p "$deps_root"
    local f n=0
    for f in "$deps_dir"/*.deb; do run dpkg-deb -x "$f" "$deps_root"; n=$((n + 1)); done
    # Debian points libopenblas.so and cblas.h at the pthread variant with update-alternatives,
    # which unpacking does not run: the same links, inside the prefix.
    if [[ -d "$lib/openblas-pthread" ]] || dry; then
      run ln -sf -t "$lib" "$lib"/openblas-pthread/libopenblas*.so*
      run mkdir -p "$deps_root/usr/include/x86_64-linux-gnu"
      run ln -sf -t "$deps_root/usr/include/x86_64-linux-gnu" "$deps_root"/usr/include/x86_64-linux-gnu/openblas-pthread/*.h
    fi
    did+="${did:+; }$n .deb files from $deps_dir unpacked into $deps_root"
  fi
  detail "${did:-nothing to do}"
}

stage_build() {
  local log="$out_dir/build.log"
  log_to "$log"
  local args=(-S . -B "$build")
  # Ninja when there is one: it schedules the whole target list at once. A folder configured
  # before keeps the generator it has (CMake refuses to change it).
  if [[ ! -f "$build/CMakeCache.txt" ]] && command -v ninja >/dev/null 2>&1; then args+=(-G Ninja); fi
  # CONVNET_WERROR=OFF: a newer host compiler's new warning must not stop the first run.
  args+=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DCONVNET_WERROR=OFF)
  [[ -z "$cudnn_cmake_root" ]] || args+=("-DCUDNN_ROOT=$cudnn_cmake_root")
  run cmake "${args[@]}" >>"$log" 2>&1
  if ! dry && ! grep -q 'convnet: CUDA .*cuDNN' "$log"; then
    echo "configure did not find CUDA and cuDNN (see $log); set CUDNN_ROOT to cuDNN's folder" >&2
    return 1
  fi
  # Only what the later stages run: the CPU and emulation tests are CI's job.
  run cmake --build "$build" -j "$jobs" --target "${targets[@]}" >>"$log" 2>&1
  record_versions >>"$log" 2>&1
  dry || detail "$(grep -o 'convnet: CUDA .*' "$log" | head -n 1 | sed 's/^convnet: //')"
}

stage_test() {
  local log="$out_dir/ctest.log" rc=0
  log_append "$log"
  # Tests named *OnTwoGpus need two GPUs: on a one-GPU machine they are left out (and said so),
  # rather than skipped, which would fail the stage.
  local exclude=()
  if ! dry && [[ "$(grep -c '^GPU ' <<<"$gpu_list")" -lt 2 ]]; then
    exclude=(-E OnTwoGpus)
    note "one GPU: the *OnTwoGpus tests are left out"
  fi
  run CONVNET_REQUIRE_GPU=1 ctest --test-dir "$build" -L gpu "${exclude[@]}" -j "$ctest_jobs" --output-on-failure \
    --no-tests=error --timeout $((deadline[test] * 2 / 3)) >>"$log" 2>&1 || rc=$?
  dry && return 0
  # ctest's exit status covers failures only: a skipped test (GTEST_SKIP, which
  # CONVNET_REQUIRE_GPU=1 turns into a failure) or one not run is read from its report, the block
  # "The following tests did not run:".
  local result not_run count
  result="$(grep -E 'tests passed, [0-9]+ tests? failed out of' "$log" | tail -n 1 || true)"
  not_run="$(grep -E '^[[:space:]]*[0-9]+ - .+ \((Skipped|Not Run|Disabled)\)[[:space:]]*$' "$log" || true)"
  count=0
  [[ -z "$not_run" ]] || count="$(wc -l <<<"$not_run")"
  echo "$count" >"$state/not-run"
  if grep -q 'No tests were found' "$log"; then
    echo "no GPU tests found: was $build configured with CUDA and cuDNN?" >&2
    return 1
  fi
  if [[ "$count" -gt 0 ]]; then
    echo "tests that did not run:" >&2
    echo "$not_run" >&2
    echo "${result:-no result line}; $count skipped or not run" >&2
    return 1
  fi
  if [[ "$rc" -ne 0 ]]; then
    echo "${result:-ctest exit $rc, no result line (see ctest.log)}" >&2
    return "$rc"
  fi
  detail "$result"
}

stage_harness() {
  local log="$out_dir/harness.log"
  log_to "$log"
  need "$build/conv_harness"
  run CONVNET_REQUIRE_GPU=1 "$build/conv_harness" "${harness_args[@]}" >>"$log" 2>&1
  dry && return 0
  # Without a device the harness says so; whatever its exit status, that is not a pass.
  if grep -q '^no CUDA device' "$log"; then
    grep -m 1 '^no CUDA device' "$log" >&2
    return 1
  fi
  detail "$(grep -E '^[0-9]+ checks, [0-9]+ failed' "$log" | tail -n 1 || true)"
}

stage_benchmark() {
  local log="$out_dir/benchmark.log" rc=0
  log_to "$log"
  need "$build/convnet"
  # --backend cuda: never fall back to a (very slow) cpu run; --compare defaults to cudnn,cudnn_tf32.
  # At most 1/2 of the deadline, so the tf32 and bf16 runs (one comparison backend each, not two)
  # still run; the tf32 one at most 1/4, leaving the rest to bf16.
  echo "=== --backend cuda" >>"$log"
  cap=$((deadline[benchmark] / 2)) run "$build/convnet" benchmark --backend cuda --json --repeats "$repeats" \
    >"$out_dir/benchmark.json" 2>>"$log" || rc=$?
  # v4 TF32 against cuDNN in the same precision: --compare defaults to cudnn_tf32.
  echo "=== --backend cuda_tf32" >>"$log"
  cap=$((deadline[benchmark] / 4)) run "$build/convnet" benchmark --backend cuda_tf32 --json --repeats "$repeats" \
    >"$out_dir/benchmark_tf32.json" 2>>"$log" || rc=$?
  # v4 BF16 against cuDNN BF16: --compare defaults to cudnn@bf16. Its JSON goes into the state
  # folder (the summary reads it there) and then into benchmark.log: 8 output files at most.
  echo "=== --backend cuda --precision bf16" >>"$log"
  run "$build/convnet" benchmark --backend cuda --precision bf16 --json --repeats "$repeats" \
    >"$state/benchmark_bf16.json" 2>>"$log" || rc=$?
  { echo "=== benchmark_bf16.json"; cat "$state/benchmark_bf16.json"; } >>"$log"
  return "$rc"
}

stage_train() {
  local log="$out_dir/train.log" data=data/cifar10
  local archive="${CIFAR_ARCHIVE:-.carry/cifar10-jpeg.tar.xz}"
  log_to "$log"
  need "$build/convnet"
  if [[ -n "${CIFAR_ARCHIVE:-}" && ! -f "$CIFAR_ARCHIVE" ]]; then
    echo "CIFAR_ARCHIVE=$CIFAR_ARCHIVE: no such file" >&2
    return 1
  fi
  if [[ -f "$archive" ]]; then
    cap=$train_prep run CONVNET="$build/convnet" tools/prepare_cifar10.sh --from "$archive" --out "$data" \
      --format binary >>"$log" 2>&1
  elif [[ ! -d "$data" ]]; then
    dry || skip "no CIFAR-10: put cifar10-jpeg.tar.xz in .carry/ or set CIFAR_ARCHIVE"
    note "neither $archive nor $data here: a real run skips this stage"
  fi
  local failed=0 b dir start rc
  for b in "${train_backends[@]}"; do
    dir="$build/gpu-check-runs/$b"
    run rm -rf "$dir"
    echo "=== configs/vgg11_bn.yaml, train.epochs=$train_epochs, on $b" >>"$log"
    start="$(date +%s%N)"
    rc=0
    cap=$train_per_backend run "$build/convnet" train configs/vgg11_bn.yaml --set "train.epochs=$train_epochs" \
      --set "train.backend=$b" --set "output.dir=$dir" --set "data.path=$data" "${train_sets[@]}" \
      >>"$log" 2>&1 || rc=$?
    dry && continue
    echo "$rc $((($(date +%s%N) - start) / 1000000))" >"$state/train-$b"  # exit status, wall ms
    if [[ -f "$dir/metrics.jsonl" ]]; then
      echo "--- $dir/metrics.jsonl" >>"$log"
      cat "$dir/metrics.jsonl" >>"$log"
      cp "$dir/metrics.jsonl" "$state/metrics-$b.jsonl"
    fi
    [[ "$rc" -eq 0 ]] || failed=1
  done
  return "$failed"
}

# Why compute-sanitizer did not get to run the program in FILE (exit status RC), if that is what
# happened: it cannot attach on some machines (a GPU or driver it does not support). Prints the
# first line of the reason and succeeds; fails when the program ran.
sanitizer_unsupported() {
  local file="$1" rc="$2" line
  line="$(grep -m 1 -E 'Device not supported|Unable to find|[Ee]rror:? 999|\(999\)' "$file" || true)"
  if [[ -z "$line" && "$rc" -ne 0 ]] && ! grep -qE '^\[(==========|  PASSED  |  FAILED  )\]|^Running main\(\)' "$file"; then
    line="$(grep -m 1 -v '^[=[:space:]]*$' "$file" || echo "exit $rc without output")"
  fi
  [[ -n "$line" ]] || return 1
  [[ "$line" =~ ^=*[[:space:]]*(.*)$ ]]  # without compute-sanitizer's "========= " prefix
  echo "${BASH_REMATCH[1]:0:160}"
}

stage_sanitize() {
  local log="$out_dir/ctest.log" sanitizer
  log_append "$log"
  echo "=== compute-sanitizer" >>"$log"
  sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
  if [[ ! -x "$sanitizer" ]]; then
    dry || skip "compute-sanitizer not found"
    sanitizer=compute-sanitizer
  fi
  local tool t rc offset reason env args runs=0 clean=0 errors=() unsupported=()
  for tool in memcheck initcheck racecheck; do  # racecheck, the slowest, last
    for t in "${gpu_tests[@]}"; do
      env=(CONVNET_REQUIRE_GPU=1)
      args=()
      # Under the sanitizers 40 of the 400 random problems. gpu_conv_random_test under racecheck
      # would take minutes even so; v4's shared-memory pipelines are racecheck's business, on 8
      # problems and without the VGG layers.
      case "$t:$tool" in
        gpu_conv_random_test:racecheck) continue ;;
        gpu_conv_tc_test:racecheck) env+=(CONVNET_CONV_PROBLEMS=8); args+=("--gtest_filter=-*VggLayers*") ;;
        gpu_conv_random_test:* | gpu_conv_tc_test:*) env+=(CONVNET_CONV_PROBLEMS=40) ;;
      esac
      offset="$(stat -c %s "$log")"
      rc=0
      run "${env[@]}" "$sanitizer" --tool "$tool" --error-exitcode 99 "$build/tests/$t" --gtest_brief=1 \
        "${args[@]}" >>"$log" 2>&1 || rc=$?
      dry && continue
      tail -c +$((offset + 1)) "$log" >"$state/sanitize-run"
      if reason="$(sanitizer_unsupported "$state/sanitize-run" "$rc")"; then
        unsupported+=("$tool: $reason")
        echo "= $tool not supported here: $reason" >>"$log"
        break  # the same for every program
      fi
      runs=$((runs + 1))
      if [[ "$rc" -ne 0 ]]; then
        errors+=("$tool $t (exit $rc)")
      elif grep -q '^\[  SKIPPED \]' "$state/sanitize-run"; then
        errors+=("$tool $t (tests skipped: not checked)")  # as in the test stage
      else
        clean=$((clean + 1))
      fi
    done
  done
  dry && return 0
  if [[ "$runs" -eq 0 ]]; then
    skip "compute-sanitizer not supported here: ${unsupported[0]#*: }"
  fi
  local result="$clean of $runs runs clean"
  [[ ${#unsupported[@]} -eq 0 ]] || result+="; not supported here: $(printf '%s; ' "${unsupported[@]}")"
  if [[ ${#errors[@]} -gt 0 ]]; then
    echo "${result%; }; not clean: $(printf '%s, ' "${errors[@]}" | sed 's/, $//')" >&2
    return 1
  fi
  detail "${result%; }"
}

declare -A status=() details=() seconds=()
run_stage() {
  local name="$1" rc start left
  rm -f "$state/skip" "$state/detail" "$state/log" "$state/deadline"
  start="$(date +%s)"
  left=$((budget - (start - t0)))
  if ! dry && [[ "$left" -lt "${deadline[$name]}" ]]; then
    status[$name]="SKIP"
    seconds[$name]=0
    details[$name]="budget: needs its ${deadline[$name]} s deadline, ${left} s of the $budget s left"
    say "stage $name skipped: ${details[$name]}"
    write_summary >"$out_dir/summary.txt"
    return
  fi
  say "stage $name (deadline ${deadline[$name]} s) ..."
  stage_end=$((start + deadline[$name]))
  set +e
  (
    set -e
    "stage_$name"
  ) 2>"$state/stderr"
  rc=$?
  set -e
  seconds[$name]=$(($(date +%s) - start))
  if dry; then
    [[ "$rc" -eq 0 ]] || { say "dry run of stage $name failed:"; cat "$state/stderr" >&2; dry_failed=1; }
    return
  fi
  if [[ "$rc" -ne 0 ]]; then
    # Why: the deadline, else the stage's own message, else the end of its log.
    local why="$state/stderr"
    [[ -s "$why" || ! -f "$state/log" ]] || why="$(cat "$state/log")"
    status[$name]="FAIL"
    if [[ -f "$state/deadline" ]]; then
      details[$name]="deadline ${deadline[$name]} s exceeded"
    else
      details[$name]="exit $rc: $(grep -v '^[[:space:]]*$' "$why" 2>/dev/null | tail -n 1 | cut -c 1-160)"
    fi
    say "stage $name FAILED after ${seconds[$name]} s: ${details[$name]}; end of $(basename "$why"):"
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
  echo "gpu_check summary: $profile profile, $(($(date +%s) - t0)) s of its $budget s budget;" \
    "commit $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)"
  echo "gpu:      ${gpu_name:-unknown} (nvidia-smi: name, driver, memory)"
  # write_summary runs under errexit: every lookup that can find nothing ends in || ...
  local versions devices
  versions="$(grep -E '^(CUDA toolkit|CUDA build information)' "$state/versions" 2>/dev/null || true)"
  devices="$(grep -E '^(cuda:[0-9]|no CUDA device)' "$state/versions" 2>/dev/null || true)"
  echo "versions: ${versions:-not recorded (no $build/convnet --version, or a build without CUDA)}"
  [[ -n "$devices" ]] || devices="not recorded"
  echo "devices:  ${devices//$'\n'/$'\n'          }"
  echo "cuDNN:    $cudnn_source"
  printf '%-10s %-5s %6s %9s  %s\n' stage state "time" deadline detail
  for s in "${plan[@]}"; do
    [[ -n "${status[$s]:-}" ]] || continue
    printf '%-10s %-5s %5ss %8ss  %s\n' "$s" "${status[$s]}" "${seconds[$s]}" "${deadline[$s]}" "${details[$s]}"
  done
  if [[ "${status[test]:-}" == PASS || "${status[test]:-}" == FAIL ]]; then
    local line
    line="$(grep -E 'tests passed, [0-9]+ tests? failed out of' "$out_dir/ctest.log" | tail -n 1 || true)"
    echo "gpu tests: ${line:-no result line in ctest.log}; skipped or not run: $(cat "$state/not-run" 2>/dev/null || echo '?')"
  fi
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$out_dir/benchmark.json" "$out_dir/benchmark_tf32.json" "$state/benchmark_bf16.json" "$state" \
      "$train_epochs" \
      "${train_backends[@]}" <<'PY' || echo "(summary of benchmark and training failed)"
import json, os, sys

bench_paths, state, epochs = sys.argv[1:4], sys.argv[4], sys.argv[5]
backends = sys.argv[6:]

def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}x"

for bench_path in bench_paths:  # cuda vs cudnn and cudnn_tf32, cuda_tf32 vs cudnn_tf32, cuda bf16 vs cudnn@bf16
    name = os.path.basename(bench_path)
    if not os.path.exists(bench_path) or os.path.getsize(bench_path) == 0:
        continue
    try:
        b = json.load(open(bench_path))
    except ValueError as e:
        print(f"{name} unreadable: {e}")
        continue
    print(f"benchmark: {b['model']}, batch {b['batch_size']}, {b['backend']} in {b.get('precision', 'fp32')} vs "
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
    steps = acc = ips = None
    mpath = os.path.join(state, f"metrics-{be}.jsonl")
    if os.path.exists(mpath):
        for line in open(mpath):
            try:
                m = json.loads(line)
            except ValueError:
                continue
            if m.get("split") == "train":
                steps, ips = m.get("step"), m.get("images_per_sec")
            elif m.get("split") == "test":
                acc = m.get("accuracy")
    rows.append((be, "ok" if rc == "0" else f"exit {rc}", int(wall_ms) / 1000, steps, ips, acc))
if rows:
    print(f"training, configs/vgg11_bn.yaml with train.epochs={epochs} (a smoke run, not an accuracy):")
    print(f"  {'backend':<12} {'result':<8} {'wall s':>8} {'steps':>6} {'train img/s':>12} {'test acc':>9}")
    for be, res, secs, steps, ips, acc in rows:
        steps_s = "-" if steps is None else str(steps)
        ips_s = "-" if ips is None else f"{ips:.0f}"
        acc_s = "-" if acc is None else f"{100 * acc:.2f}%"
        print(f"  {be:<12} {res:<8} {secs:>8.1f} {steps_s:>6} {ips_s:>12} {acc_s:>9}")
PY
  fi
  local n
  n="$(find "$out_dir" -maxdepth 1 -type f | wc -l)"
  [[ "$n" -le 8 ]] || echo "note: $out_dir holds $n files; the device tool brings back 8"
  local failed=()
  for s in "${plan[@]}"; do [[ "${status[$s]:-}" != FAIL ]] || failed+=("$s"); done
  if [[ ${#failed[@]} -eq 0 ]]; then
    echo "RESULT: PASS"
  else
    echo "RESULT: FAIL (${failed[*]})"
  fi
}

# --- main ---
plan=(setup "${stages[@]}")  # setup always: cheap, and a reused build folder needs its libraries too
echo "budget $profile $budget"
for s in "${plan[@]}"; do echo "deadline $s ${deadline[$s]}"; done
echo "targets ${targets[*]}"
if dry; then
  say "dry run, $profile profile: the commands a real run would run (output to $requested_out)"
else
  say "$(head -n 1 <<<"$gpu_list"); output in $out_dir"
fi
dry_failed=0
for s in "${plan[@]}"; do
  run_stage "$s"
  # Reusing a build: its versions, as the build stage records them.
  if [[ "$s" == setup && " ${stages[*]} " != *" build "* ]] && { dry || [[ -x "$build/convnet" ]]; }; then
    (stage_end=$(($(date +%s) + 30)); record_versions >/dev/null 2>&1) || true
  fi
done
dry && exit "$dry_failed"
echo
cat "$out_dir/summary.txt"
grep -q '^RESULT: PASS' "$out_dir/summary.txt"
