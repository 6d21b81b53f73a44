#!/usr/bin/env bash
# Builds the libFuzzer targets of refit's parsers with clang (ASan + UBSan)
# into build-fuzz/ and runs each for [seconds] (default 30) on a copy of its
# seed corpus (fuzz/corpus/<target>/, never written to). Prints one summary
# line per target (a Markdown table row) and exits non-zero when any target
# crashes, leaks, runs out of memory or times out; the reproducer is in
# build-fuzz/fuzz-artifacts/<target>/.
#   scripts/fuzz.sh [seconds]      FUZZ_TARGETS="a b" to run only some.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_TARGET="${1:-30}"
BUILD="$ROOT/build-fuzz"
TARGETS=(${FUZZ_TARGETS:-safetensors_fuzz safetensors_index_fuzz
  model_spec_fuzz layout_fuzz})

build() {
  # Only refit's libraries and the fuzz targets: no tests, tool, Python, MPI
  # or CUDA (none of them is fuzzed, and nvcc would get clang's flags).
  CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREFIT_FUZZ=ON \
    -DREFIT_BUILD_TESTS=OFF -DREFIT_BUILD_BENCH=OFF -DREFIT_BUILD_PYTHON=OFF \
    -DREFIT_WITH_MPI=OFF -DREFIT_WITH_CUDA=OFF >/dev/null
  cmake --build "$BUILD" -j "$(nproc)" --target "${TARGETS[@]}"
}

# "key: value" of libFuzzer's final stats (-print_final_stats=1).
final_stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

# Runs one target; prints its summary row; returns non-zero on a finding.
run_target() {
  local t="$1" corpus="$BUILD/fuzz-corpus/$1" art="$BUILD/fuzz-artifacts/$1/"
  local log="$BUILD/fuzz-logs/$1.log" dict="$ROOT/fuzz/dict/$1.dict"
  rm -rf "$corpus" "$art"
  mkdir -p "$corpus" "$art" "$(dirname "$log")"
  cp "$ROOT/fuzz/corpus/$t/"* "$corpus/"
  local seeds
  seeds=$(ls "$corpus" | wc -l)
  # -timeout: one input may take seconds under ASan (a config.json at the
  # parameter bound, 2^19 entries, takes about 9 s); more is a finding.
  local args=(-max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1
    -timeout=25 -rss_limit_mb=2048 -artifact_prefix="$art")
  [ -f "$dict" ] && args+=(-dict="$dict")
  local start=$SECONDS rc=0
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$BUILD/$(target_dir "$t")/$t" "${args[@]}" "$corpus" >"$log" 2>&1 ||
    rc=$?
  local findings
  findings=$(ls "$art" | wc -l)
  [ "$rc" -ne 0 ] && [ "$findings" -eq 0 ] && findings=1
  local cov
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  printf '| %s | %s | %s | %s -> %s | %s | %s |\n' "$t" \
    "$(final_stat number_of_executed_units "$log")" "$((SECONDS - start))" \
    "$seeds" "$(ls "$corpus" | wc -l)" "${cov:-?}" "$findings"
  if [ "$findings" -ne 0 ]; then
    echo "  $t: finding (exit $rc); log $log, reproducer in $art" >&2
    grep -m 5 -E 'ERROR:|runtime error:|SUMMARY:|abort' "$log" >&2 || true
    return 1
  fi
}

# Folder of a target inside the build tree (beside its unit's library).
target_dir() {
  case "$1" in
  safetensors*) echo src/refit/io ;;
  *) echo src/refit/core ;;
  esac
}

build_start=$SECONDS
build
echo "build: $((SECONDS - build_start)) s"
echo "| target | executions | seconds | corpus (seeds -> end) | coverage | crashes |"
echo "|---|---|---|---|---|---|"
failed=0
for t in "${TARGETS[@]}"; do run_target "$t" || failed=1; done
echo "total: $SECONDS s"
exit "$failed"
