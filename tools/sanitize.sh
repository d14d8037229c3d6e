#!/usr/bin/env bash
# Builds convnet CPU-only with clang and sanitizers, and runs the CPU and emulation suites under
# them (.ci/run's sanitizer stage runs the first form).
#
#   tools/sanitize.sh [address,undefined] [--build-only | --readers]
#       build-asan/: ASan + UBSan, and the fuzz targets (CONVNET_FUZZ, tools/fuzz.sh reuses this
#       build); runs every test labelled cpu (tests/cpu, tests/emu) and the corpus replays (fuzz).
#       All of it takes about 45 min on 2 cores (the emulated tensor-core kernels and the bf16
#       training test are slow unoptimised), so CI runs --readers: only the tests of the code that
#       reads outside input (base, config, io, data, checkpoint, metrics) and the corpus replays,
#       and builds only those, in about 10 min; the full run is for a machine with more cores.
#   tools/sanitize.sh thread [--build-only]
#       build-tsan/: TSan, only the tests of code that runs threads: the CPU backend's thread pool,
#       the data loaders, threaded image decoding, and the thread-rank replica groups (gradient
#       reducer, sync batchnorm). Not in CI: it compiles every library again, ~2x the ASan stage.
#
# Findings stop the test at the first report (halt_on_error, UBSan -fno-sanitize-recover), and
# LeakSanitizer checks every test process at exit. -O0: clang at -O1 with ASan spends a minute on
# each emulated tensor-core kernel (63 s against 3 s for conv_tc_forward) and twice the time on the
# rest, which CI's 2 cores cannot afford; -O0 also keeps every access that ASan should see. ONNX
# export is left out (protobuf's headers are slow to compile, and its test needs ONNX Runtime).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="address,undefined"
if [[ $# -gt 0 && $1 != --* ]]; then
  mode="$1"
  shift
fi
build_only=0
readers=0
if [[ ${1:-} == --build-only ]]; then
  build_only=1
  shift
elif [[ ${1:-} == --readers ]]; then
  readers=1
  shift
fi
if [[ $# -gt 0 ]]; then
  echo "usage: tools/sanitize.sh [address,undefined|thread] [--build-only | --readers]" >&2
  exit 2
fi

jobs="$(nproc)"
configure=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O0 -DCONVNET_WITH_CUDA=OFF -DCONVNET_WITH_MPI=OFF
           -DCONVNET_WITH_ONNX=OFF -DCONVNET_WERROR=ON "-DCONVNET_SANITIZE=$mode"
           -DCMAKE_EXE_LINKER_FLAGS=-fuse-ld=lld)  # lld: the ~150 sanitized test programs link in seconds
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:strict_init_order=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"

case "$mode" in
  address,undefined)
    dir=build-asan
    CC=clang CXX=clang++ cmake -S . -B "$dir" "${configure[@]}" -DCONVNET_FUZZ=ON
    if [[ $readers == 1 ]]; then
      tests=()
      for f in tests/cpu/{base,config,io,data,train_checkpoint,train_metrics,train_memory}_*_test.cpp; do
        tests+=("$(basename "$f" .cpp)")
      done
      fuzzers=(fuzz_config fuzz_safetensors fuzz_checkpoint fuzz_cifar_binary fuzz_image fuzz_metrics
               fuzz_checkpoint_seeds)
      cmake --build "$dir" -j "$jobs" --target "${tests[@]}" "${fuzzers[@]}"
      # Executables not in the list are not built: ctest's placeholders for them are skipped.
      ctest --test-dir "$dir" -L "cpu|fuzz" -E "_NOT_BUILT|GpuCheckScript" --output-on-failure -j "$jobs" --timeout 600
      exit 0
    fi
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
