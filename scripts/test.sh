#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with CTest,
# then every fuzz target for 30 s (scripts/fuzz.sh; REFIT_FUZZ_SECONDS=0
# skips it).
source "$(dirname "$0")/common.sh"
install_missing
build
cd "$ROOT/build"
ctest --output-on-failure -j "$(nproc)" "$@"
if [ "${REFIT_FUZZ_SECONDS:-30}" -gt 0 ]; then
  "$ROOT/scripts/fuzz.sh" "${REFIT_FUZZ_SECONDS:-30}"
fi
