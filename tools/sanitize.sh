#!/usr/bin/env bash
# Builds convnet CPU-only with clang and sanitizers, and runs the CPU and emulation suites under
# them (.ci/run's sanitizer stage runs the first form).
#
#   tools/sanitize.sh [address,undefined] [--build-only]
#       build-asan/: ASan + UBSan, and the fuzz targets (CONVNET_FUZZ, tools/fuzz.sh reuses this
#       build); runs every test labelled cpu (tests/cpu, tests/emu) and the corpus replays (fuzz).
#   tools/sanitize.sh thread [--build-only]
#       build-tsan/: TSan, only the tests of code that runs threads: the CPU backend's thread pool,
#       the data loaders, threaded image decoding, and the thread-rank replica groups (gradient
#       reducer, sync batchnorm). Not in CI: it compiles every library again, ~2x the ASan stage.
#
# Findings stop the test at the first report (halt_on_error, UBSan -fno-sanitize-recover), and
# LeakSanitizer checks every test process at exit. -O1: sanitized code compiles about twice as fast
# as at -O3 and the suites still run in minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="address,undefined"
if [[ $# -gt 0 && $1 != --* ]]; then
  mode="$1"
  shift
fi
build_only=0
if [[ ${1:-} == --build-only ]]; then
  build_only=1
  shift
fi
if [[ $# -gt 0 ]]; then
  echo "usage: tools/sanitize.sh [address,undefined|thread] [--build-only]" >&2
  exit 2
fi

jobs="$(nproc)"
configure=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DCONVNET_WITH_CUDA=OFF -DCONVNET_WITH_MPI=OFF
           -DCONVNET_WERROR=ON "-DCONVNET_SANITIZE=$mode")
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:strict_init_order=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"

case "$mode" in
  address,undefined)
    dir=build-asan
    CC=clang CXX=clang++ cmake -S . -B "$dir" "${configure[@]}" -DCONVNET_FUZZ=ON
    cmake --build "$dir" -j "$jobs"
    [[ $build_only == 1 ]] && exit 0
    ctest --test-dir "$dir" -L "cpu|fuzz" --output-on-failure -j "$jobs" --timeout 600
    ;;
  thread)
    dir=build-tsan
    tests=(ops_threads_test data_loader_test data_device_loader_test data_folder_test train_gradient_reducer_test
           layer_batch_norm_sync_test train_sync_batch_norm_test)
    CC=clang CXX=clang++ cmake -S . -B "$dir" "${configure[@]}"
    cmake --build "$dir" -j "$jobs" --target "${tests[@]}"
    [[ $build_only == 1 ]] && exit 0
    # Executables not in the list are not built: ctest's placeholders for them are skipped.
    ctest --test-dir "$dir" -L cpu -E "_NOT_BUILT|GpuCheckScript" --output-on-failure -j "$jobs" --timeout 600
    ;;
  *)
    echo "tools/sanitize.sh: unknown sanitizer set '$mode' (address,undefined or thread)" >&2
    exit 2
    ;;
esac
