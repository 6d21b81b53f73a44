#!/usr/bin/env bash
# CTest package.examples: installs the build tree BUILD into a temporary
# prefix, builds examples/ against that installed package, and runs them
# (trainer_mpi under the MPI launcher given after BUILD, when there is one).
set -euo pipefail
build="$1"
shift
launcher=("$@")
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$here" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" -j "$(nproc)" >/dev/null
"$work/build/trainer_local"
if [ -x "$work/build/trainer_mpi" ] && [ ${#launcher[@]} -gt 0 ]; then
  "${launcher[@]}" -np 5 "$work/build/trainer_mpi"
fi
