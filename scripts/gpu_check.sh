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
timeout 240 "$TEST" --gtest_brief=1 || status=1
echo "== refit run (CPU transport), bundled checkpoint"
timeout 60 "$BIN/refit" run --checkpoint "$DATA/agilerl-tiny-qwen3-moe" || status=1
echo "== gpu_check: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
