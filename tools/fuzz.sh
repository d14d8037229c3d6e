#!/usr/bin/env bash
# Fuzzes convnet's file readers with the libFuzzer targets of tests/fuzz (ASan + UBSan, in
# build-asan/, configured and built by tools/sanitize.sh when missing).
#
#   tools/fuzz.sh [SECONDS] [TARGET...]    fuzz each target for SECONDS (default 60)
#   tools/fuzz.sh --runs N [TARGET...]     N inputs per target after its corpus (CI: --runs 2000)
#
# TARGET is a reader: config safetensors checkpoint cifar_binary image metrics (default: all).
# Each input is at most 64 KB and must finish in 2 s (FUZZ_TIMEOUT; inputs take milliseconds, and
# 1 s gave false timeouts at a load of 10 on 2 cores), without any single allocation above 256 MB
# or 2 GB of RSS in all; leaks, sanitizer reports and exceptions other than convnet::Error are
# crashes too. New coverage is kept in build-asan/fuzz/<target>/, never in the source tree. Every
# crashing input is copied to tests/fuzz/corpus/<target>/regression-<sha1>, where the corpus replay
# (ctest -L fuzz) runs it from then on: commit it with the fix. Exits 1 when anything crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(config safetensors checkpoint cifar_binary image metrics)
budget=(-max_total_time=60)
if [[ ${1:-} == --runs ]]; then
  budget=("-runs=${2:?--runs needs a count}")
  shift 2
elif [[ ${1:-} =~ ^[0-9]+$ ]]; then
  budget=("-max_total_time=$1")
  shift
fi
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")

dir=build-asan
if [[ ! -f $dir/CMakeCache.txt ]]; then
  tools/sanitize.sh address,undefined --build-only
fi
cmake --build "$dir" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
dictionary() {
  case "$1" in
    config) echo "-dict=tests/fuzz/config.dict" ;;
    safetensors | checkpoint) echo "-dict=tests/fuzz/safetensors.dict" ;;
  esac
}

crashed=()
for target in "${targets[@]}"; do
  corpus="tests/fuzz/corpus/$target"
  work="$dir/fuzz/$target"
  artifacts="$dir/fuzz/$target-artifacts/"
  mkdir -p "$work" "$artifacts"
  echo "=== fuzz_$target (${budget[*]})"
  # The first directory receives new inputs; the committed corpus is only read.
  set +e
  "$dir/tests/fuzz/fuzz_$target" "${budget[@]}" $(dictionary "$target") -max_len=65536 -timeout="${FUZZ_TIMEOUT:-2}" \
    -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1 -artifact_prefix="$artifacts" "$work" "$corpus"
  status=$?
  set -e
  for artifact in "$artifacts"*; do
    [[ -f $artifact ]] || continue
    regression="$corpus/regression-$(sha1sum "$artifact" | cut -c1-16)"
    cp "$artifact" "$regression"
    echo "fuzz_$target: $(basename "$artifact") -> $regression"
    rm "$artifact"
  done
  [[ $status == 0 ]] || crashed+=("$target")
done
if [[ ${#crashed[@]} -gt 0 ]]; then
  echo "tools/fuzz.sh: crashes in: ${crashed[*]} (inputs copied into tests/fuzz/corpus/<target>/regression-*)" >&2
  exit 1
fi
echo "tools/fuzz.sh: no crashes"
