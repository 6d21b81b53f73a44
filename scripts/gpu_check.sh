#!/usr/bin/env bash
# The checks that need a GPU, in one run (under 5 minutes on one GPU), from
# the folder scripts/build_gpu_bundle.sh makes (run it there:
# `bash gpu-bundle/gpu_check.sh`), or from a source tree whose build-gpu/ has
# them. Prints the device, the device kernel tests (byte for byte against
# the CPU kernels), the NCCL copy service (world 1: self sends of every
# memory kind; the conformance suite where 3 GPUs exist), CUDA IPC across
# two processes and the conformance suite on the CUDA IPC copy service with
# 3 rank processes (control over a socket group), the main job with casts, block FP8 and MXFP8 converted on
# the device, and the refit tool's main job beside a device memcpy and a
# PyTorch slicing reshard of the same plan on the GPU, and the Python
# package's CUDA tests under the machine's torch; exits non-zero on any
# failure.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -x "$HERE/bin/refit_cuda_test" ]; then
  BIN="$HERE/bin"; DATA="$HERE/data/checkpoints"; BENCH="$HERE/bench"
  TEST="$BIN/refit_cuda_test"; NCCL_TEST="$BIN/refit_nccl_gpu_test"
  IPC_TEST="$BIN/refit_cuda_ipc_memory_test"
  EMB_TEST="$BIN/refit_transport_embedded_cuda_conformance"
  IPC_CONF="$BIN/refit_cuda_ipc_process_conformance"
  PYDIR="$HERE/python"; PYTESTS="$HERE/python/tests"; SOURCE="$HERE"
else
  BIN="$HERE/../build-gpu"; DATA="$HERE/../data/checkpoints"; BENCH="$HERE/../bench"
  TEST="$BIN/src/refit/cuda/refit_cuda_test"
  NCCL_TEST="$BIN/src/refit/transport/nccl/refit_nccl_gpu_test"
  IPC_TEST="$BIN/src/refit/transport/cuda_ipc/refit_cuda_ipc_memory_test"
  EMB_TEST="$BIN/src/refit/transport/conformance/refit_transport_embedded_cuda_conformance"
  IPC_CONF="$BIN/src/refit/transport/conformance/refit_cuda_ipc_process_conformance"
  PYDIR="$BIN/python"; PYTESTS="$HERE/../src/refit/python/tests"; SOURCE="$HERE/.."
fi
# libnccl.so.2 from the NCCL wheel PyTorch uses (refit opens it at run time).
# The wheel's folder differs between CUDA releases (nvidia/nccl/lib,
# nvidia/cu13/lib): the first libnccl.so.2 under site-packages' nvidia/.
NCCL_LIB="$(python3 -c 'import glob, os, site
for d in site.getsitepackages():
    for f in sorted(glob.glob(os.path.join(d, "nvidia", "**", "libnccl.so.2"), recursive=True)):
        print(os.path.dirname(f)); raise SystemExit' 2>/dev/null)"
export LD_LIBRARY_PATH="$HERE/lib${NCCL_LIB:+:$NCCL_LIB}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
status=0
echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "glibc $(ldd --version | head -1 | awk '{print $NF}'), libnccl.so.2 from ${NCCL_LIB:-the system}"
echo "== device kernels against the CPU kernels"
timeout 120 "$TEST" --gtest_brief=1 || status=1
echo "== conformance suite: embedded copy service, device buffers, 4 ranks on one GPU"
timeout 120 "$EMB_TEST" --gtest_brief=1 || status=1
echo "== nccl copy service (world 1 self sends; conformance needs 3 GPUs: device, then host buffers)"
timeout 120 "$NCCL_TEST" --gtest_brief=1 || status=1
timeout 120 "$NCCL_TEST" --host-regions --gtest_filter='CopyServiceConformance.*' \
  --gtest_brief=1 || status=1
echo "== cuda ipc memory (export, move, a second process writing through the handle)"
timeout 60 "$IPC_TEST" --gtest_brief=1 || status=1
echo "== conformance suite: CUDA IPC copy service, 3 processes on one GPU, control over sockets"
timeout 150 "$IPC_CONF" --gtest_brief=1 || status=1
echo "== Python: torch CUDA tensors refit in place, converted on the device, after the caller's stream;"
echo "   cuda_ipc between 4 processes launched without MPI (metadata over sockets)"
if [ -d "$PYDIR/refit" ]; then
  PYTHONPATH="$PYDIR" REFIT_SOURCE_DIR="$SOURCE" timeout 180 python3 -m pytest -q -rs \
    -p no:cacheprovider "$PYTESTS/test_cuda.py" "$PYTESTS/test_socket.py" \
    "$PYTESTS/test_swap_local.py" || status=1
else
  echo "no Python package in this bundle (built where no python3.12 was found)"; status=1
fi
echo "== refit run --device cuda, bundled checkpoint (bit-exact, per-call cost)"
timeout 60 "$BIN/refit" run --checkpoint "$DATA/agilerl-tiny-qwen3-moe" \
  --device cuda --iters 50 || status=1
echo "== refit run --device cuda with formats converted by the device kernels (bit-exact)"
for dtype in f16 fp8-block mxfp8; do
  timeout 60 "$BIN/refit" run --checkpoint "$DATA/agilerl-tiny-qwen3-moe" \
    --device cuda --dst-dtype "$dtype" --iters 5 || status=1
done
echo "== refit run --device cuda, 2-layer Qwen3-30B-A3B tp=4,ep=2 -> tp=2,ep=4, 8 ranks on one GPU"
Q30="${TMPDIR:-/tmp}/refit-q30"
CONFIGS="$(dirname "$DATA")/model-configs"
[ -f "$Q30/model.safetensors" ] ||
  timeout 90 "$BIN/refit" synth --config "$CONFIGS/qwen3-30b-a3b" --out "$Q30" --layers 2 || status=1
timeout 180 "$BIN/refit" run --checkpoint "$Q30" --src tp=4,ep=2 --dst tp=2,ep=4 \
  --world 8 --device cuda --baseline --iters 10 --dump-plan "$Q30/plan.json" || status=1
echo "== PyTorch slicing + copy_ of the same plan on the GPU (the 1.5x baseline)"
timeout 120 python3 "$BENCH/torch_reshard.py" "$Q30/plan.json" --device cuda \
  --iters 10 || status=1
echo "== gpu_check: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
