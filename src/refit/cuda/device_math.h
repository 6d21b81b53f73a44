// The per-element arithmetic of the device kernels, written once for host and
// device (REFIT_HD), on top of core/quant's constexpr scalar conversions. The
// CPU test (device_math_test.cc) runs these same functions on the host and
// compares them with quant::CastBuffer, quant::QuantizeBlockFp8 and
// quant::QuantizeMxfp8 (with quant::Swizzle128x4) bit for bit, so the device
// kernels differ from the CPU kernels only in how they index and reduce.
#ifndef REFIT_CUDA_DEVICE_MATH_H_
#define REFIT_CUDA_DEVICE_MATH_H_

#include <cstdint>

#include "refit/core/dtype.h"
#include "refit/core/quant/float_cast.h"
#include "refit/core/quant/mxfp8.h"
#include "refit/core/quant/scale_swizzle.h"

#if defined(__CUDACC__)
#define REFIT_HD __host__ __device__
#else
#define REFIT_HD
#endif

namespace refit::cuda {

/// An F32, BF16 or F16 element (its bits in the low bytes of `bits`) as F32.
REFIT_HD inline float WideToF32(uint32_t bits, DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return quant::Bf16ToF32(static_cast<uint16_t>(bits));
    case DType::kF16:
      return quant::F16ToF32(static_cast<uint16_t>(bits));
    default:
      return quant::F32FromBits(bits);
  }
}

/// An F32 value as the bits of an F32, BF16 or F16 element (RNE).
REFIT_HD inline uint32_t F32ToWide(float f, DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return quant::F32ToBf16(f);
    case DType::kF16:
      return quant::F32ToF16(f);
    default:
      return quant::F32Bits(f);
  }
}

/// The scale_inv of a block of largest magnitude `amax`:
/// quant::BlockFp8ScaleInv, written without std::max for the device.
REFIT_HD inline float BlockScaleInv(float amax, float min_amax, bool ue8m0) {
  const float a = amax < min_amax ? min_amax : amax;
  float s = a / 448.0f;
  if (ue8m0) {
    s = quant::F32FromBits((quant::F32Bits(s) + 0x007FFFFFu) & 0x7F800000u);
  }
  return s == 0.0f ? 1.0f : s;
}

/// One element of a block-FP8 tensor: x / s (IEEE division), saturated E4M3.
REFIT_HD inline uint8_t QuantizeE4M3(float x, float scale_inv) {
  return quant::F32ToE4M3(x / scale_inv, quant::Fp8Overflow::kSaturate);
}

/// |x| as F32 bits (sign cleared). For F32 values these order like the
/// magnitudes, so an MXFP8 block's amax is an exact, order-free integer max of
/// them (quant::QuantizeMxfp8 reduces the same way); >= 0x7F800000 means
/// infinite or NaN.
REFIT_HD inline uint32_t MagnitudeBits(float x) {
  return quant::F32Bits(x) & 0x7FFFFFFFu;
}

/// The E8M0 scale byte of an MXFP8 block whose largest magnitude has the F32
/// bits `amax_bits` (finite): quant::Mxfp8ScaleExponent, NVIDIA's recipe
/// 2^ceil(log2(amax / 448)) (Megatron mxfp8_quantize.py). Needs IEEE F32
/// division with subnormals (nvcc's default; not --use_fast_math / -ftz=true).
REFIT_HD inline uint8_t Mxfp8BlockExponent(uint32_t amax_bits) {
  return quant::Mxfp8ScaleExponent(quant::F32FromBits(amax_bits));
}

/// The factor an MXFP8 block with scale byte `e` multiplies its elements by:
/// 2^(127 - e), an exact power of two (biased exponent 254 - e; e <= 247 for
/// finite input), or 0 for e == 0 (the block's elements become ±0, as in
/// quant::QuantizeMxfp8 and Megatron's kernel).
REFIT_HD inline float Mxfp8QuantFactor(uint8_t e) {
  return e == 0 ? 0.0f
                : quant::F32FromBits(static_cast<uint32_t>(254 - e) << 23);
}

/// One MXFP8 element: E4M3(x * factor), saturated (OCP MX v1.0 E4M3). The
/// product is exact unless it falls below F32's normal range, far below half
/// E4M3's smallest subnormal, so it gives ±0 either way (even flushed to
/// zero). `factor` from Mxfp8QuantFactor.
REFIT_HD inline uint8_t QuantizeMxfp8Element(float x, float factor) {
  return quant::F32ToE4M3(x * factor, quant::Fp8Overflow::kSaturate);
}

/// Byte offset of the scale of block `col` of row `row` in a scale matrix with
/// `cols` columns: row-major (row * cols + col), or the cuBLAS / FlashInfer
/// 128x4 swizzled layout (quant::Swizzled128x4Offset).
REFIT_HD inline int64_t Mxfp8ScaleOffset(int64_t row, int64_t col, int64_t cols,
                                         bool swizzled) {
  return swizzled ? quant::Swizzled128x4Offset(row, col, cols)
                  : row * cols + col;
}

}  // namespace refit::cuda

#endif  // REFIT_CUDA_DEVICE_MATH_H_
