// QuantizeBlockFp8Device: one thread block per FP8 block. The block's amax
// is reduced exactly (a max is order-free), its scale and elements computed
// with device_math.h, as quant::QuantizeBlockFp8 does on the CPU.
#include <algorithm>
#include <cmath>
#include <string>

#include "refit/cuda/cuda_check.h"
#include "refit/cuda/device_kernels.h"
#include "refit/cuda/device_math.h"
#include "refit/cuda/nonfinite_flag.h"

namespace refit::cuda {

namespace {

constexpr int kThreads = 256;

__device__ float LoadF32(const void* in, DType dtype, int64_t i) {
  const uint32_t bits = dtype == DType::kF32
                            ? static_cast<const uint32_t*>(in)[i]
                            : static_cast<const uint16_t*>(in)[i];
  return WideToF32(bits, dtype);
}

// One thread block per FP8 block, block b at (b / grid_cols, b % grid_cols)
// (a 1-D grid: 2^31 - 1 blocks, where gridDim.y stops at 65535). `bad`
// receives the smallest key b * br * bc + (row-major index in the block) of
// a non-finite element, the one the CPU kernel names (stays ~0 when none).
__global__ void QuantizeKernel(const void* in, DType dtype, int64_t n,
                               int64_t k, int64_t br, int64_t bc,
                               int64_t grid_cols, float min_amax, bool ue8m0,
                               uint8_t* data, float* scale_inv,
                               unsigned long long* bad) {
  const int64_t b = blockIdx.x;
  const int64_t r0 = b / grid_cols * br, c0 = b % grid_cols * bc;
  const int64_t rows = min(br, n - r0), cols = min(bc, k - c0);
  const int64_t count = rows * cols;
  __shared__ float amax_of[kThreads];
  float amax = 0.0f;
  for (int64_t e = threadIdx.x; e < count; e += blockDim.x) {
    const float x = LoadF32(in, dtype, (r0 + e / cols) * k + c0 + e % cols);
    if (!isfinite(x)) {
      atomicMin(bad, static_cast<unsigned long long>(b * br * bc + e));
    }
    amax = fmaxf(amax, fabsf(x));
  }
  amax_of[threadIdx.x] = amax;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      amax_of[threadIdx.x] =
          fmaxf(amax_of[threadIdx.x], amax_of[threadIdx.x + half]);
    }
    __syncthreads();
  }
  const float s = BlockScaleInv(amax_of[0], min_amax, ue8m0);
  if (threadIdx.x == 0) scale_inv[b] = s;
  for (int64_t e = threadIdx.x; e < count; e += blockDim.x) {
    const int64_t i = (r0 + e / cols) * k + c0 + e % cols;
    data[i] = QuantizeE4M3(LoadF32(in, dtype, i), s);
  }
}

bool Aligned(const void* p, uint64_t to) {
  return reinterpret_cast<uintptr_t>(p) % to == 0;
}

Status CheckArgs(const void* in, DType dtype, int64_t n, int64_t k,
                 const quant::BlockFp8Options& o, const void* scale_inv) {
  const std::string fn = "QuantizeBlockFp8Device";
  if (n < 0 || k < 0 || o.block.rows <= 0 || o.block.cols <= 0) {
    return InvalidArgument(fn + ": bad shape [" + std::to_string(n) + ", " +
                           std::to_string(k) + "] or block");
  }
  if (!(o.min_amax >= 0.0f) || !std::isfinite(o.min_amax)) {
    return InvalidArgument(fn + ": min_amax must be finite and >= 0");
  }
  if (dtype != DType::kF32 && dtype != DType::kBF16 && dtype != DType::kF16) {
    return InvalidArgument(fn + ": input dtype " +
                           std::string(DTypeName(dtype)) +
                           " is not F32, BF16 or F16");
  }
  if (!Aligned(in, DTypeSize(dtype)) || !Aligned(scale_inv, 4)) {
    return InvalidArgument(fn +
                           ": input or scales not aligned to their "
                           "element size");
  }
  return OkStatus();
}

// [row, col] of a key the kernel wrote.
std::string Element(unsigned long long key, int64_t k,
                    const quant::BlockFp8Options& o) {
  const int64_t br = o.block.rows, bc = o.block.cols;
  const int64_t grid_cols = (k + bc - 1) / bc;
  const auto b = static_cast<int64_t>(key) / (br * bc);
  const auto e = static_cast<int64_t>(key) % (br * bc);
  const int64_t r0 = b / grid_cols * br, c0 = b % grid_cols * bc;
  const int64_t cols = std::min(bc, k - c0);
  return "[" + std::to_string(r0 + e / cols) + ", " +
         std::to_string(c0 + e % cols) + "]";
}

}  // namespace

Status QuantizeBlockFp8Device(const void* in, DType in_dtype, int64_t n,
                              int64_t k, const quant::BlockFp8Options& options,
                              void* data, void* scale_inv,
                              cudaStream_t stream) {
  REFIT_RETURN_IF_ERROR(CheckArgs(in, in_dtype, n, k, options, scale_inv));
  if (n == 0 || k == 0) return OkStatus();
  const int64_t br = options.block.rows, bc = options.block.cols;
  const int64_t grid_cols = (k + bc - 1) / bc;
  const int64_t blocks = (n + br - 1) / br * grid_cols;
  if (blocks > int64_t{0x7fffffff}) {
    return InvalidArgument("QuantizeBlockFp8Device: " + std::to_string(blocks) +
                           " blocks, over 2^31 - 1");
  }
  REFIT_ASSIGN_OR_RETURN(
      const unsigned long long first,
      RunWithNonFiniteFlag(
          stream, "QuantizeBlockFp8Device", [&](unsigned long long* flag) {
            QuantizeKernel<<<static_cast<unsigned>(blocks), kThreads, 0,
                             stream>>>(
                in, in_dtype, n, k, br, bc, grid_cols, options.min_amax,
                options.scale_format == quant::BlockScaleFormat::kUe8m0,
                static_cast<uint8_t*>(data), static_cast<float*>(scale_inv),
                flag);
            return OkStatus();
          }));
  if (first != kNoNonFinite) {
    return InvalidArgument("QuantizeBlockFp8Device: element " +
                           Element(first, k, options) + " is not finite");
  }
  return OkStatus();
}

}  // namespace refit::cuda
