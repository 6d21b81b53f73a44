#!/usr/bin/env bash
# The checks that need a GPU, in one run (under 5 minutes on one GPU), from
# the folder scripts/build_gpu_bundle.sh makes (run it there:
# `bash gpu-bundle/gpu_check.sh`), or from a source tree whose build-gpu/ has
# them. Prints the device, the device kernel tests (byte for byte against
# the CPU kernels) and the refit tool's main job; exits non-zero on any
# failure.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -x "$HERE/bin/refit_cuda_test" ]; then
  BIN="$HERE/bin"; DATA="$HERE/data/checkpoints"
else
  BIN="$HERE/../build-gpu"; DATA="$HERE/../data/checkpoints"
  [ -x "$BIN/src/refit/cuda/refit_cuda_test" ] && BIN_TEST="$BIN/src/refit/cuda/refit_cuda_test"
fi
TEST="${BIN_TEST:-$BIN/refit_cuda_test}"
export LD_LIBRARY_PATH="$HERE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
status=0
echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "== device kernels against the CPU kernels"
timeout 120 "$TEST" --gtest_brief=1 || status=1
echo "== refit run --device cuda, bundled checkpoint (bit-exact, per-call cost)"
timeout 60 "$BIN/refit" run --checkpoint "$DATA/agilerl-tiny-qwen3-moe" \
  --device cuda --iters 50 || status=1
echo "== refit run --device cuda, 2-layer Qwen3-30B-A3B tp=4,ep=2 -> tp=2,ep=4, 8 ranks on one GPU"
Q30="${TMPDIR:-/tmp}/refit-q30"
CONFIGS="$(dirname "$DATA")/model-configs"
[ -f "$Q30/model.safetensors" ] ||
  timeout 90 "$BIN/refit" synth --config "$CONFIGS/qwen3-30b-a3b" --out "$Q30" --layers 2 || status=1
timeout 180 "$BIN/refit" run --checkpoint "$Q30" --src tp=4,ep=2 --dst tp=2,ep=4 \
  --world 8 --device cuda --baseline --iters 10 || status=1
echo "== gpu_check: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
