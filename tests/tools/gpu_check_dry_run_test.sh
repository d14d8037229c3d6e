#!/usr/bin/env bash
# tools/gpu_check.sh rehearsed without a GPU (CTest GpuCheckScript.DryRun, label cpu). The script
# is the one command of a GPU session, so what it would run is checked here, where it is cheap:
# `--dry-run` and `--dry-run --quick` print the configure and build lines (sm_90, warnings not
# errors, the exact target list), the GPU test, harness, benchmark (cuda, then cuda_tf32),
# training and sanitizer commands, with deadlines that fit the budgets (480 s, 240 s); bad
# arguments are usage errors (exit 2); a failing nvidia-smi is "no GPU" (exit 3); a dry run writes
# nothing. When BUILD_DIR is a CMake build of this project with CUDA, every target the dry run
# names must exist there.
#
#   gpu_check_dry_run_test.sh SOURCE_DIR [BUILD_DIR]
set -euo pipefail

src="${1:?usage: gpu_check_dry_run_test.sh SOURCE_DIR [BUILD_DIR]}"
build="${2:-}"
script="$src/tools/gpu_check.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

failures=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
expect() {  # DESCRIPTION COMMAND...: passes when COMMAND succeeds
  local what="$1"
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

# The environment variables the script reads would change what it prints.
gpu_check() { env -u OUT -u BUILD_DIR -u CUDNN_ROOT -u CIFAR_ARCHIVE bash "$script" "$@"; }

# --- the script itself ---
expect "bash -n tools/gpu_check.sh" bash -n "$script"
if command -v shellcheck >/dev/null 2>&1; then
  expect "shellcheck tools/gpu_check.sh and this test" shellcheck "$script" "$0"
else
  echo "shellcheck not installed: not run"
fi

# The GPU tests, as tests/CMakeLists.txt globs them: one executable each.
gpu_tests=()
for f in "$src"/tests/gpu/*_test.cpp; do gpu_tests+=("$(basename "$f" .cpp)"); done
[[ ${#gpu_tests[@]} -gt 0 ]] || { echo "FAIL: no tests/gpu/*_test.cpp in $src" >&2; exit 1; }
expected_targets=(convnet conv_harness "${gpu_tests[@]}")

# The one line of OUTPUT_FILE that matches the extended regex (the first, if several).
line_of() { grep -m 1 -E "$2" "$1" || true; }
has_word() { [[ " $1 " == *" $2 "* ]]; }
starts_with() { [[ "$1" == "$2"* ]]; }

check_profile() {  # NAME BUDGET EPOCHS REPEATS [ARGS...]
  local name="$1" budget="$2" epochs="$3" repeats="$4"
  shift 4
  local out="$tmp/$name.out" rc=0
  gpu_check --dry-run "$@" >"$out" 2>&1 || rc=$?
  expect "$name: --dry-run${*:+ $*} exits 0 (got $rc)" test "$rc" -eq 0
  if [[ "$rc" -ne 0 ]]; then sed 's/^/  | /' "$out" >&2; return; fi

  local configure build_line t
  configure="$(line_of "$out" '^\+ cmake -S ')"
  for t in -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DCONVNET_WERROR=OFF; do
    expect "$name: configure line with $t" has_word "$configure" "$t"
  done
  build_line="$(line_of "$out" '^\+ cmake --build ')"
  expect "$name: a build line with --target" has_word "$build_line" --target
  local -a named
  read -r -a named <<<"${build_line#*--target }"
  for t in "${expected_targets[@]}"; do
    expect "$name: build target $t" has_word "${named[*]}" "$t"
  done
  expect "$name: build targets are exactly convnet, conv_harness and the GPU tests (${#named[@]} named)" \
    test "${#named[@]}" -eq "${#expected_targets[@]}"
  expect "$name: the 'targets' line lists the same" \
    test "$(line_of "$out" '^targets ')" == "targets ${named[*]}"

  local ctest_line
  ctest_line="$(line_of "$out" '^\+ .*ctest ')"
  expect "$name: ctest with CONVNET_REQUIRE_GPU=1" starts_with "$ctest_line" "+ CONVNET_REQUIRE_GPU=1 ctest "
  expect "$name: ctest -L gpu" has_word "$ctest_line" "-L gpu"
  expect "$name: ctest fails when it finds no tests" has_word "$ctest_line" --no-tests=error
  expect "$name: conv_harness with CONVNET_REQUIRE_GPU=1" \
    grep -qE '^\+ CONVNET_REQUIRE_GPU=1 [^ ]*/conv_harness( |$)' "$out"
  local b
  for b in cuda cuda_tf32; do  # ours against cuDNN in fp32 and tf32, then v4 TF32 against cuDNN TF32
    expect "$name: benchmark --backend $b with --repeats $repeats" \
      grep -qE "^\\+ [^ ]*/convnet benchmark --backend $b .*--repeats $repeats( |\$)" "$out"
  done
  for b in cuda cudnn; do
    expect "$name: train on $b, train.epochs=$epochs" \
      grep -qE "^\\+ [^ ]*/convnet train configs/vgg11_bn.yaml .*--set train.epochs=$epochs .*--set train.backend=$b( |\$)" "$out"
  done

  local s sum=0 stages=""
  while read -r _ s t; do stages+=" $s"; sum=$((sum + t)); done < <(grep -E '^deadline [a-z]+ [0-9]+$' "$out")
  for s in setup build test harness benchmark train; do
    expect "$name: a deadline for stage $s" has_word "$stages" "$s"
  done
  expect "$name: deadlines sum to $sum s <= $budget s" test "$sum" -le "$budget"
  expect "$name: budget line" grep -qx "budget $name $budget" "$out"
}

check_profile full 480 0.2 10
check_profile quick 240 0.05 3 --quick

# --- the sanitizer stage, and a dry run writes nothing ---
out="$tmp/sanitize.out"
rc=0
env -u OUT -u CUDNN_ROOT -u CIFAR_ARCHIVE BUILD_DIR="$tmp/build" bash "$script" --dry-run \
  --stages sanitize --out "$tmp/out" >"$out" 2>&1 || rc=$?
expect "sanitize: --dry-run --stages sanitize exits 0 (got $rc)" test "$rc" -eq 0
expect "sanitize: a deadline" grep -qE '^deadline sanitize [0-9]+$' "$out"
for t in "${gpu_tests[@]}"; do
  for tool in memcheck initcheck racecheck; do
    n="$(grep -cE "^\\+ CONVNET_REQUIRE_GPU=1 .*compute-sanitizer --tool $tool .*/tests/$t( |\$)" "$out" || true)"
    if [[ "$t" == gpu_conv_random_test && "$tool" == racecheck ]]; then
      expect "sanitize: no racecheck over $t" test "$n" -eq 0
    else
      expect "sanitize: $tool over $t" test "$n" -eq 1
    fi
  done
done
n="$(grep -E '/tests/gpu_conv_random_test( |$)' "$out" | grep -vc 'CONVNET_CONV_PROBLEMS=40' || true)"
expect "sanitize: gpu_conv_random_test always on 40 problems ($n runs without)" test "$n" -eq 0
n="$(grep -E '/tests/gpu_conv_tc_test( |$)' "$out" | grep -vc 'CONVNET_CONV_PROBLEMS=' || true)"
expect "sanitize: gpu_conv_tc_test always on a short list ($n runs without)" test "$n" -eq 0
expect "a dry run creates no build folder" test ! -e "$tmp/build"
expect "a dry run creates no output folder" test ! -e "$tmp/out"

# --- arguments and the GPU check ---
for args in "--stages nope" "--repeats 1" "--bogus" "--dry-run --stages nope" "--dry-run --repeats 1" "--dry-run --bogus"; do
  rc=0
  read -r -a argv <<<"$args"
  gpu_check "${argv[@]}" >"$tmp/args.out" 2>&1 || rc=$?
  expect "$args: usage error, exit 2 (got $rc)" test "$rc" -eq 2
  expect "$args: says why" grep -q 'gpu_check: error: ' "$tmp/args.out"
done
rc=0
gpu_check --help >"$tmp/help.out" 2>&1 || rc=$?
expect "--help exits 0 (got $rc)" test "$rc" -eq 0
for t in --dry-run --quick; do expect "--help describes $t" grep -q -- "$t" "$tmp/help.out"; done
# A machine whose nvidia-smi fails has no GPU: exit 3 before anything runs (whatever GPU this
# machine has, the nvidia-smi found first is this one).
mkdir -p "$tmp/bin"
printf '#!/bin/sh\necho "NVIDIA-SMI has failed" >&2\nexit 9\n' >"$tmp/bin/nvidia-smi"
chmod +x "$tmp/bin/nvidia-smi"
rc=0
PATH="$tmp/bin:$PATH" gpu_check --out "$tmp/out" >"$tmp/nogpu.out" 2>&1 || rc=$?
expect "no GPU: exit 3 (got $rc)" test "$rc" -eq 3
expect "no GPU: nothing written" test ! -e "$tmp/out"

# --- the targets exist in a configured build with CUDA ---
# Both read the build files and build nothing. Ninja's `help` target lists only the targets that
# nothing else depends on, so for Ninja every target it knows is listed instead.
list_targets() {
  if [[ -f "$build/build.ninja" ]]; then
    ninja -C "$build" -t targets all
  else
    cmake --build "$build" --target help
  fi
}
if [[ -z "$build" || ! -f "$build/CMakeCache.txt" ]]; then
  echo "no configured build folder given: target check not run"
elif ! known="$(list_targets 2>&1)"; then
  fail "listing the targets of $build failed: $(tail -n 1 <<<"$known")"
elif ! grep -qE '(^|[ /])(conv_harness|cuda/harness)([ :/]|$)' <<<"$known"; then
  echo "$build has no CUDA (no conv_harness target): target check not run"
else
  for t in "${expected_targets[@]}"; do
    expect "target $t exists in $build" grep -qE "^(\\.\\.\\. )?$t(:.*)?\$" <<<"$known"
  done
fi

if [[ "$failures" -gt 0 ]]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "all checks passed"
