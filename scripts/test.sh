#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with CTest.
source "$(dirname "$0")/common.sh"
install_missing
build
cd "$ROOT/build"
ctest --output-on-failure -j "$(nproc)" "$@"
