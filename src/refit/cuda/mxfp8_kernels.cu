// QuantizeMxfp8Device: one warp per 32-element MXFP8 block, lane j holding
// element j. The block's amax is a warp max of the elements' magnitude bits
// (exact and order-free, as quant::QuantizeMxfp8 reduces it); its scale byte
// and elements come from device_math.h, as on the CPU.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "refit/core/quant/scale_swizzle.h"
#include "refit/cuda/cuda_check.h"
#include "refit/cuda/device_kernels.h"
#include "refit/cuda/device_math.h"
#include "refit/cuda/nonfinite_flag.h"

namespace refit::cuda {

namespace {

constexpr int kThreads = 256;  // 8 warps, 8 blocks of 32 elements at a time
constexpr int kWarp = 32;
static_assert(quant::kMxfp8BlockSize == kWarp);

__device__ uint32_t LoadBits(const void* in, DType dtype, int64_t i) {
  return dtype == DType::kF32 ? static_cast<const uint32_t*>(in)[i]
                              : static_cast<const uint16_t*>(in)[i];
}

// Block b (of `blocks`, `cols` per row) covers elements [32 b, 32 b + 32).
// Every lane of a warp runs the same iterations (the stride is a multiple of
// the warp), so the full-mask shuffles are safe. `bad` receives the smallest
// linear index of a non-finite element (stays ~0 when there is none).
__global__ void Mxfp8Kernel(const void* in, DType dtype, int64_t blocks,
                            int64_t cols, bool swizzled, uint8_t* data,
                            uint8_t* scales, unsigned long long* bad) {
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  const int64_t stride = int64_t{gridDim.x} * blockDim.x / kWarp;
  for (int64_t b = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / kWarp;
       b < blocks; b += stride) {
    const int64_t i = b * kWarp + lane;
    const float x = WideToF32(LoadBits(in, dtype, i), dtype);
    const uint32_t mag = MagnitudeBits(x);
    if (mag >= 0x7F800000u) {
      atomicMin(bad, static_cast<unsigned long long>(i));
    }
    uint32_t amax = mag;
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      amax = max(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, offset));
    }
    const uint8_t e = Mxfp8BlockExponent(amax);
    if (lane == 0) {
      scales[Mxfp8ScaleOffset(b / cols, b % cols, cols, swizzled)] = e;
    }
    data[i] = QuantizeMxfp8Element(x, Mxfp8QuantFactor(e));
  }
}

Status CheckArgs(const void* in, DType dtype, int64_t m, int64_t k,
                 const void* data, const void* scales) {
  const std::string fn = "QuantizeMxfp8Device";
  if (m < 0 || k < 0 ||
      (k > 0 && m > std::numeric_limits<int64_t>::max() / 4 / k)) {
    return InvalidArgument(fn + ": bad shape [" + std::to_string(m) + ", " +
                           std::to_string(k) + "]");
  }
  if (k % quant::kMxfp8BlockSize != 0) {
    return InvalidArgument(fn + ": K = " + std::to_string(k) +
                           " is not a multiple of the MXFP8 block size 32");
  }
  if (dtype != DType::kF32 && dtype != DType::kBF16 && dtype != DType::kF16) {
    return InvalidArgument(fn + ": input dtype " +
                           std::string(DTypeName(dtype)) +
                           " is not F32, BF16 or F16");
  }
  if (m == 0 || k == 0) return OkStatus();
  if (in == nullptr || data == nullptr || scales == nullptr) {
    return InvalidArgument(fn + ": null input, data or scales pointer");
  }
  // A misaligned load would be a sticky CUDA error that poisons the context.
  if (reinterpret_cast<uintptr_t>(in) % DTypeSize(dtype) != 0) {
    return InvalidArgument(fn + ": input is not aligned to its " +
                           std::string(DTypeName(dtype)) + " elements");
  }
  return OkStatus();
}

}  // namespace

Status QuantizeMxfp8Device(const void* in, DType in_dtype, int64_t m, int64_t k,
                           void* data, void* scales, bool swizzled,
                           cudaStream_t stream) {
  REFIT_RETURN_IF_ERROR(CheckArgs(in, in_dtype, m, k, data, scales));
  if (m == 0 || k == 0) return OkStatus();
  const int64_t cols = k / quant::kMxfp8BlockSize, blocks = m * cols;
  if (swizzled) {
    // The padding of the 128x4 tiles is zero, as quant::Swizzle128x4 writes
    // it; the kernel then writes every real scale.
    const int64_t bytes = quant::Swizzled128x4Bytes(m, cols);
    if (bytes != blocks) {
      REFIT_CUDA_RETURN_IF_ERROR(
          cudaMemsetAsync(scales, 0, static_cast<size_t>(bytes), stream),
          "QuantizeMxfp8Device scale padding");
    }
  }
  const int64_t warps_per_cta = kThreads / kWarp;
  const int64_t ctas = std::min<int64_t>(
      (blocks + warps_per_cta - 1) / warps_per_cta, int64_t{1} << 20);
  REFIT_ASSIGN_OR_RETURN(
      const unsigned long long first,
      RunWithNonFiniteFlag(
          stream, "QuantizeMxfp8Device", [&](unsigned long long* flag) {
            Mxfp8Kernel<<<static_cast<unsigned>(ctas), kThreads, 0, stream>>>(
                in, in_dtype, blocks, cols, swizzled,
                static_cast<uint8_t*>(data), static_cast<uint8_t*>(scales),
                flag);
            return OkStatus();
          }));
  if (first != kNoNonFinite) {
    const auto i = static_cast<int64_t>(first);
    return InvalidArgument(
        "QuantizeMxfp8Device: non-finite input element at [" +
        std::to_string(i / k) + ", " + std::to_string(i % k) + "]");
  }
  return OkStatus();
}

}  // namespace refit::cuda
