#!/usr/bin/env bash
# Builds, on this (CPU) machine, a relocatable folder for a GPU machine that
# has the CUDA driver but none of the Debian -dev libraries, no MPI and
# nothing to install with: gpu-bundle/ (under 64 MiB) with
#   bin/refit_cuda_test   the `gpu`-labelled device tests (cudart linked
#                         statically; needs only the CUDA driver)
#   bin/refit_nccl_gpu_test, bin/refit_cuda_ipc_memory_test,
#   bin/refit_transport_embedded_cuda_conformance
#                         the NCCL copy service on the GPU (libnccl.so.2
#                         opened at run time: the wheel's, see gpu_check.sh)
#                         and CUDA IPC export / map / copy across processes
#   bin/refit_cuda_ipc_process_conformance
#                         the conformance suite on the CUDA IPC copy service,
#                         ranks as processes on one GPU, control over a
#                         "socket" group (no MPI)
#   bench/torch_reshard.py  the PyTorch slicing baseline, on the GPU
#   python/refit, python/tests
#                         the Python package built for the GPU machine's
#                         Python (3.12, PYTHON312 or the first python3.12
#                         found, pyenv's included; left out where there is
#                         none) and its CUDA tests (test_cuda.py; and
#                         test_socket.py: "cuda_ipc" between processes
#                         launched without MPI), run there with that
#                         machine's torch
#   bin/refit             the refit tool, its shared libraries in lib/
#                         ($ORIGIN rpath), libstdc++ and libgcc linked in
#   data/                 the bundled tiny checkpoint, the Qwen3-30B-A3B config
#   gpu_check.sh          what to run there (scripts/gpu_check.sh)
# Usage: scripts/build_gpu_bundle.sh [OUT]   (default: gpu-bundle)
source "$(dirname "$0")/common.sh"
install_missing
OUT="${1:-$ROOT/gpu-bundle}"
BUILD="$ROOT/build-gpu"
# The GPU machine's python3 is 3.12 (its torch's): the extension's ABI.
PY=""
for p in ${PYTHON312:-} $(command -v python3.12) /root/.pyenv/versions/3.12*/bin/python3.12; do
  if "$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    PY="$p"; break
  fi
done
PYTHON_ARGS=(-DREFIT_BUILD_PYTHON=OFF)
PYTHON_TARGET=()
if [ -n "$PY" ]; then
  PYTHON_ARGS=(-DREFIT_BUILD_PYTHON=ON "-DPython_EXECUTABLE=$PY")
  PYTHON_TARGET=(refit_python)
else
  echo "no python3.12 here: the bundle leaves out the Python package"
fi
LINK_FLAGS="-static-libstdc++ -static-libgcc"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DREFIT_WITH_CUDA=ON -DREFIT_WITH_MPI=OFF "${PYTHON_ARGS[@]}" \
  "-DCMAKE_EXE_LINKER_FLAGS=$LINK_FLAGS" "-DCMAKE_MODULE_LINKER_FLAGS=$LINK_FLAGS" \
  "-DCMAKE_BUILD_RPATH=\$ORIGIN/../lib;\$ORIGIN/../../lib" >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target refit_cuda_test refit_cli \
  refit_nccl_gpu_test refit_cuda_ipc_memory_test \
  refit_transport_embedded_cuda_conformance refit_cuda_ipc_process_conformance \
  "${PYTHON_TARGET[@]}"
rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib" "$OUT/data/checkpoints" "$OUT/bench"
cp "$BUILD/src/refit/cuda/refit_cuda_test" "$BUILD/refit" \
  "$BUILD/src/refit/transport/nccl/refit_nccl_gpu_test" \
  "$BUILD/src/refit/transport/cuda_ipc/refit_cuda_ipc_memory_test" \
  "$BUILD/src/refit/transport/conformance/refit_transport_embedded_cuda_conformance" \
  "$BUILD/src/refit/transport/conformance/refit_cuda_ipc_process_conformance" \
  "$OUT/bin/"
cp "$ROOT/bench/torch_reshard.py" "$OUT/bench/"
BINARIES=("$BUILD/refit")
if [ -n "$PY" ]; then
  mkdir -p "$OUT/python/tests"
  cp -r "$BUILD/python/refit" "$OUT/python/"
  TESTS="$ROOT/src/refit/python/tests"
  cp "$TESTS/conftest.py" "$TESTS/test_cuda.py" "$TESTS/test_swap_local.py" \
    "$TESTS/test_socket.py" "$OUT/python/tests/"
  BINARIES+=("$BUILD"/python/refit/_refit*.so)
fi
# The shared libraries that a bare machine lacks (fmt, spdlog, xxhash),
# found through $ORIGIN/../lib (bin/) and $ORIGIN/../../lib (python/refit/).
for lib in $(ldd "${BINARIES[@]}" | awk '/=> \// {print $3}' | sort -u |
             grep -E 'libfmt|libspdlog|libxxhash'); do
  cp -L "$lib" "$OUT/lib/"
done
cp -r "$ROOT/data/checkpoints/agilerl-tiny-qwen3-moe" "$OUT/data/checkpoints/"
mkdir -p "$OUT/data/model-configs"
cp -r "$ROOT/data/model-configs/qwen3-30b-a3b" "$OUT/data/model-configs/"
cp "$ROOT/scripts/gpu_check.sh" "$OUT/"
du -sh "$OUT"
