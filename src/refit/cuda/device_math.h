// The per-element arithmetic of the device kernels, written once for host and
// device (REFIT_HD), on top of core/quant's constexpr scalar conversions. The
// CPU test (device_math_test.cc) runs these same functions on the host and
// compares them with quant::CastBuffer and quant::QuantizeBlockFp8 bit for
// bit, so the device kernels differ from the CPU kernels only in how they
// index and reduce.
#ifndef REFIT_CUDA_DEVICE_MATH_H_
#define REFIT_CUDA_DEVICE_MATH_H_

#include <cstdint>

#include "refit/core/dtype.h"
#include "refit/core/quant/float_cast.h"

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

}  // namespace refit::cuda

#endif  // REFIT_CUDA_DEVICE_MATH_H_
