// Bit-exact conversions between the floating-point element formats of
// safetensors files: F32, BF16, F16, FP8 E4M3FN and FP8 E5M2 (bit layouts in
// layouts.md §4.3). Every narrowing conversion rounds to nearest, ties to even
// (RNE), and each one reproduces the PyTorch c10 conversion named beside it:
// c10/util/BFloat16.h, c10/util/Half.h, c10/util/Float8_e4m3fn.h and
// c10/util/Float8_e5m2.h. Every widening conversion is exact.
//
// The scalar functions are inline and use integer arithmetic only, so results
// do not depend on the floating-point environment (flush-to-zero, x87 excess
// precision). Pure: no I/O, no threads, no allocation.
#ifndef REFIT_CORE_QUANT_FLOAT_CAST_H_
#define REFIT_CORE_QUANT_FLOAT_CAST_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

#include "refit/core/dtype.h"
#include "refit/core/status.h"

namespace refit::quant {

/// What an FP8 conversion does with a value beyond the format's largest finite
/// magnitude (after rounding).
enum class Fp8Overflow : uint8_t {
  /// PyTorch's `tensor.to(torch.float8_*)`: E4M3FN gives NaN (it has no
  /// infinity), E5M2 gives ±inf. Infinite inputs behave the same way.
  kNonSaturating,
  /// CUDA `__NV_SATFINITE` / PTX `cvt.rn.satfinite` (what Triton's
  /// `.to(tl.float8e4nv)` and so the DeepSeek-V3 and Megatron quantisation
  /// kernels use): finite overflow and ±inf clamp to ±max finite (448 for
  /// E4M3FN, 57344 for E5M2). NaN stays NaN.
  kSaturate,
};

/// Largest finite E4M3FN magnitude (S.1111.110 = 1.75 * 2^8).
inline constexpr float kE4M3Max = 448.0f;
/// Largest finite E5M2 magnitude (S.11110.11 = 1.75 * 2^15).
inline constexpr float kE5M2Max = 57344.0f;

namespace internal {

/// `x / 2^shift` rounded to nearest, ties to even. `shift` in [1, 31].
constexpr uint32_t RneShiftRight(uint32_t x, int shift) {
  const uint32_t q = x >> shift;
  const uint32_t rem = x & ((uint32_t{1} << shift) - 1);
  const uint32_t half = uint32_t{1} << (shift - 1);
  return q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
}

/// Rounds a finite, non-negative F32 given by its bits `a` (sign cleared) to a
/// binary format with `kMan` mantissa bits and exponent bias `kBias` (IEEE
/// style: exponent field 0 holds subnormals), RNE. Returns the magnitude code
/// (exponent field << kMan | mantissa). A carry out of the mantissa moves to
/// the next exponent, so results at or above the format's inf/NaN codes mean
/// overflow; the caller maps them. Valid for kBias <= 30 (F16, E4M3, E5M2):
/// F32 subnormals are then below half the target's smallest subnormal.
template <int kMan, int kBias>
constexpr uint32_t RoundMagnitude(uint32_t a) {
  constexpr uint32_t kMinNormalBits = uint32_t{127 - kBias + 1} << 23;
  if (a >= kMinNormalBits) {
    return RneShiftRight(a - (uint32_t{127 - kBias} << 23), 23 - kMan);
  }
  const int exp = static_cast<int>(a >> 23);
  if (exp == 0) return 0;
  // value = m * 2^(exp - 150); the target's subnormal unit is
  // 2^(1 - kBias - kMan), so the code is m / 2^shift.
  const uint32_t m = (a & 0x007FFFFFu) | 0x00800000u;
  const int shift = 150 + 1 - kBias - kMan - exp;
  if (shift > 24) return 0;  // m / 2^shift < 1/2
  return RneShiftRight(m, shift);
}

}  // namespace internal

/// The bits of an F32.
constexpr uint32_t F32Bits(float f) { return std::bit_cast<uint32_t>(f); }
/// The F32 with bits `u`.
constexpr float F32FromBits(uint32_t u) { return std::bit_cast<float>(u); }

/// F32 -> BF16, RNE. NaN (any sign or payload) -> 0x7FC0; overflow rounds to
/// ±inf; F32 subnormals round like any other value. Rule: PyTorch
/// c10/util/BFloat16.h `round_to_nearest_even`:
/// (u + 0x7FFF + ((u >> 16) & 1)) >> 16.
constexpr uint16_t F32ToBf16(float f) {
  const uint32_t u = F32Bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/// BF16 -> F32, exact (BF16 is the top half of an F32; NaN payloads kept).
constexpr float Bf16ToF32(uint16_t h) {
  return F32FromBits(static_cast<uint32_t>(h) << 16);
}

/// F32 -> F16 (IEEE binary16), RNE with subnormals (down to 2^-24); magnitudes
/// >= 65520 (which round past 65504) -> ±inf (0x7C00 | sign). NaN -> 0x7E00
/// with the input's sign bit (0xFE00 for a negative NaN), as PyTorch
/// c10/util/Half.h `fp16_ieee_from_fp32_value` does.
constexpr uint16_t F32ToF16(float f) {
  const uint32_t u = F32Bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);
  uint32_t q = internal::RoundMagnitude<10, 15>(a);
  if (q > 0x7C00u) q = 0x7C00u;
  return static_cast<uint16_t>(sign | q);
}

/// F16 -> F32, exact (subnormals normalised; inf kept; NaN payload shifted
/// into the top of the F32 mantissa, as PyTorch c10/util/Half.h
/// `fp16_ieee_to_fp32_value`).
constexpr float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  if (exp == 0x1F) return F32FromBits(sign | 0x7F800000u | (man << 13));
  if (exp == 0) {
    if (man == 0) return F32FromBits(sign);
    // Subnormal man * 2^-24: shift the leading one up to bit 10.
    const int s = std::countl_zero(man) - 21;
    man = (man << s) & 0x3FFu;
    exp = static_cast<uint32_t>(1 - s + 112);
    return F32FromBits(sign | (exp << 23) | (man << 13));
  }
  return F32FromBits(sign | ((exp + 112) << 23) | (man << 13));
}

/// F32 -> FP8 E4M3FN (bias 7, no infinities, NaN = S.1111.111), RNE with
/// subnormals down to 2^-9. Magnitudes that round above 448 (that is, > 464)
/// and ±inf give NaN (kNonSaturating) or ±448 (kSaturate). NaN -> 0x7F with
/// the input's sign bit (0xFF for a negative NaN). kNonSaturating is PyTorch
/// c10/util/Float8_e4m3fn.h `fp8e4m3fn_from_fp32_value` bit for bit.
constexpr uint8_t F32ToE4M3(float f, Fp8Overflow overflow) {
  const uint32_t u = F32Bits(f);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint8_t>(sign | 0x7Fu);
  uint32_t q = internal::RoundMagnitude<3, 7>(a);
  if (q > 0x7Eu) q = overflow == Fp8Overflow::kSaturate ? 0x7Eu : 0x7Fu;
  return static_cast<uint8_t>(sign | q);
}

/// FP8 E4M3FN -> F32, exact. 0x7F / 0xFF (NaN) -> F32 bits 0x7FF00000 with the
/// sign, as PyTorch c10/util/Float8_e4m3fn.h `fp8e4m3fn_to_fp32_value`.
constexpr float E4M3ToF32(uint8_t x) {
  const uint32_t sign = static_cast<uint32_t>(x & 0x80u) << 24;
  const uint32_t exp = (x >> 3) & 0xFu;
  uint32_t man = x & 0x7u;
  if ((x & 0x7Fu) == 0x7Fu) return F32FromBits(sign | 0x7FF00000u);
  if (exp == 0) {
    if (man == 0) return F32FromBits(sign);
    // Subnormal man * 2^-9: shift the leading one up to bit 3.
    const int s = std::countl_zero(man) - 28;
    man = (man << s) & 0x7u;
    return F32FromBits(sign | (static_cast<uint32_t>(1 - s + 120) << 23) |
                       (man << 20));
  }
  return F32FromBits(sign | ((exp + 120) << 23) | (man << 20));
}

/// F32 -> FP8 E5M2 (bias 15, IEEE-style inf = S.11111.00 and NaN), RNE with
/// subnormals down to 2^-16. Magnitudes that round above 57344 (that is,
/// >= 61440) and ±inf give ±inf (kNonSaturating) or ±57344 (kSaturate).
/// NaN -> 0x7F with the input's sign bit. kNonSaturating is PyTorch
/// c10/util/Float8_e5m2.h `fp8e5m2_from_fp32_value` bit for bit.
constexpr uint8_t F32ToE5M2(float f, Fp8Overflow overflow) {
  const uint32_t u = F32Bits(f);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint8_t>(sign | 0x7Fu);
  uint32_t q = internal::RoundMagnitude<2, 15>(a);
  if (q >= 0x7Cu) q = overflow == Fp8Overflow::kSaturate ? 0x7Bu : 0x7Cu;
  return static_cast<uint8_t>(sign | q);
}

/// FP8 E5M2 -> F32, exact: E5M2 is the top byte of an F16 (PyTorch
/// c10/util/Float8_e5m2.h `fp8e5m2_to_fp32_value`).
constexpr float E5M2ToF32(uint8_t x) {
  return F16ToF32(static_cast<uint16_t>(static_cast<uint16_t>(x) << 8));
}

/// BF16 -> E4M3FN with one rounding (BF16 -> F32 is exact).
constexpr uint8_t Bf16ToE4M3(uint16_t h, Fp8Overflow overflow) {
  return F32ToE4M3(Bf16ToF32(h), overflow);
}
/// F16 -> E4M3FN with one rounding (F16 -> F32 is exact).
constexpr uint8_t F16ToE4M3(uint16_t h, Fp8Overflow overflow) {
  return F32ToE4M3(F16ToF32(h), overflow);
}
/// BF16 -> E5M2 with one rounding (BF16 -> F32 is exact).
constexpr uint8_t Bf16ToE5M2(uint16_t h, Fp8Overflow overflow) {
  return F32ToE5M2(Bf16ToF32(h), overflow);
}
/// F16 -> E5M2 with one rounding (F16 -> F32 is exact).
constexpr uint8_t F16ToE5M2(uint16_t h, Fp8Overflow overflow) {
  return F32ToE5M2(F16ToF32(h), overflow);
}

/// Converts a little-endian, densely packed buffer of `in_dtype` elements
/// into `out_dtype` elements, element by element, for any pair among F32,
/// BF16 and F16 (the same dtype is a copy). Narrowing follows F32ToBf16 /
/// F32ToF16; BF16 <-> F16 goes through F32 (exact), so it rounds once, like
/// PyTorch's `tensor.to(dtype)`. Neither span needs any alignment; they must
/// not overlap.
/// Errors: kInvalidArgument when a dtype is not F32/BF16/F16 (the message
/// names the pair, e.g. "F8_E4M3 -> F32"), when `in.size()` is not a multiple
/// of the input element size, or when `out.size()` is not exactly
/// (elements of `in`) x (output element size).
Status CastBuffer(std::span<const std::byte> in, DType in_dtype,
                  std::span<std::byte> out, DType out_dtype);

}  // namespace refit::quant

#endif  // REFIT_CORE_QUANT_FLOAT_CAST_H_
