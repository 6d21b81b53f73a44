#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with CTest,
# then every fuzz target for 30 s (scripts/fuzz.sh; REFIT_FUZZ_SECONDS=0
# skips it), then the engine's C++ suite built with ASan + UBSan
# (scripts/sanitize.sh --engine; REFIT_ASAN=0 skips it).
#   scripts/test.sh [ctest args...]
#   scripts/test.sh --sanitize [--engine] address,undefined|thread [args...]
#     only that sanitizer build (build-asan/ or build-tsan/) and its suite.
source "$(dirname "$0")/common.sh"
install_missing
if [ "${1:-}" = "--sanitize" ]; then
  shift
  exec "$ROOT/scripts/sanitize.sh" "$@"
fi
build
(cd "$ROOT/build" && ctest --output-on-failure -j "$(nproc)" "$@")
if [ "${REFIT_FUZZ_SECONDS:-30}" -gt 0 ]; then
  "$ROOT/scripts/fuzz.sh" "${REFIT_FUZZ_SECONDS:-30}"
fi
if [ "${REFIT_ASAN:-1}" != 0 ]; then
  "$ROOT/scripts/sanitize.sh" --engine address,undefined
fi
