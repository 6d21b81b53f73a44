#!/usr/bin/env bash
# Builds refit with sanitizers into its own folder and runs the C++ suite
# there (scripts/test.sh --sanitize calls it; so does CI, for ASan + UBSan).
#   scripts/sanitize.sh [--engine] address,undefined [ctest args...]
#       -> build-asan/
#   scripts/sanitize.sh thread [ctest args...]  -> build-tsan/
# --engine (CI's choice, to stay within its time): without the command-line
# tool and the benchmarks (REFIT_BUILD_BENCH=OFF), i.e. the tests of core,
# io, exec, transports, checkpoint, verify and the session API.
# Neither builds CUDA (nvcc takes no sanitizer flags) nor Python (the module
# would need the sanitizer runtime preloaded into the interpreter).
# ASan + UBSan: every C++ test but the MPI ones (Open MPI's own allocations
# are not ours to fix). TSan: the threaded engine only: the executor, the
# session API over "local" groups, the embedded, p2p, checksum and faulty
# copy services.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH=ON
if [ "${1:-}" = "--engine" ]; then
  BENCH=OFF
  shift
fi
SANITIZE="${1:?usage: scripts/sanitize.sh [--engine] address,undefined|thread [ctest args]}"
shift

TSAN_TARGETS=(refit_exec_test refit_checksum_copy_service_test
  refit_swap_verify_test refit_job_test refit_transport_embedded_test
  refit_transport_embedded_conformance refit_transport_p2p_test
  refit_transport_p2p_conformance refit_transport_checksum_conformance
  refit_transport_faulty_test)

case "$SANITIZE" in
address,undefined | undefined,address | address | undefined)
  BUILD="$ROOT/build-asan"
  TARGETS=(all)
  # detect_leaks: a test that forgets memory fails. The abort makes a report
  # fail its test (UBSan aborts by itself: -fno-sanitize-recover).
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  ;;
thread)
  BUILD="$ROOT/build-tsan"
  TARGETS=("${TSAN_TARGETS[@]}")
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
  ;;
*)
  echo "scripts/sanitize.sh: --sanitize $SANITIZE: expected address,undefined or thread" >&2
  exit 2
  ;;
esac

start=$SECONDS
# -O1 -g1: line tables for the reports, a quicker build than -O2 -g.
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DREFIT_SANITIZE="$SANITIZE" \
  -DREFIT_WITH_CUDA=OFF -DREFIT_WITH_MPI=OFF -DREFIT_BUILD_PYTHON=OFF \
  -DREFIT_BUILD_BENCH="$BENCH" >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target "${TARGETS[@]}"
echo "sanitize $SANITIZE: build $((SECONDS - start)) s"
cd "$BUILD"
# Test binaries left unbuilt (the TSan subset) register *_NOT_BUILT tests.
ctest --output-on-failure -j "$(nproc)" -E '_NOT_BUILT$' "$@"
echo "sanitize $SANITIZE: total $((SECONDS - start)) s"
