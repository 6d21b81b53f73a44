// Internal to refit::quant (not a public API): typed loads and stores of F32 /
// BF16 / F16 elements in packed little-endian byte buffers; branch-free forms
// of the conversions of float_cast.h for the bulk loops (equal to the scalar
// ones bit for bit, so that the loops vectorise); a dispatcher that turns a
// runtime DType into a compile-time one so that each quantiser's inner loop is
// specialised per dtype (no per-element switch, no allocation); and the
// multiversioning attribute of the bulk kernels.
#ifndef REFIT_CORE_QUANT_ELEMENT_ACCESS_H_
#define REFIT_CORE_QUANT_ELEMENT_ACCESS_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "refit/core/dtype.h"
#include "refit/core/quant/float_cast.h"

// REFIT_QUANT_MULTIVERSION on a bulk kernel compiles it for x86-64-v4
// (AVX-512), x86-64-v3 (AVX2) and the build's baseline, and picks one when the
// program loads (GCC target_clones, an ELF ifunc). Results are identical on
// every path: the kernels use only exact integer operations and IEEE F32
// operations that round the same everywhere (the library is built with
// -ffp-contract=off, so no FMA contraction). Define REFIT_QUANT_NO_MULTIVERSION
// to build the baseline only. Not under ThreadSanitizer: the ifunc resolver
// runs while the program is relocated, before TSan's runtime is set up, and
// its instrumented code crashes there.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && !defined(REFIT_QUANT_NO_MULTIVERSION) &&     \
    !defined(__SANITIZE_THREAD__)
#define REFIT_QUANT_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define REFIT_QUANT_MULTIVERSION
#endif

namespace refit::quant::internal {

template <DType kDType>
using DTypeTag = std::integral_constant<DType, kDType>;

/// True for the dtypes the quantisers read and the dequantisers write.
constexpr bool IsWideFloat(DType d) {
  return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16;
}

/// F32ToE4M3(y, Fp8Overflow::kSaturate) for a finite `y`, written without
/// branches so that the quantisers' inner loops vectorise. |y| is first
/// clamped to 448 (exact: every |y| > 448 saturates to 448's code 0x7E).
/// Results below 2^-6 are rounded by one F32 addition (|y| + 2^14, whose ulp
/// is the E4M3 subnormal step 2^-9), as PyTorch's fp8e4m3fn_from_fp32_value
/// does; that is exact RNE under the default rounding mode and unaffected by
/// FTZ/DAZ. Equal to F32ToE4M3 for every finite F32 (checked in
/// float_cast_test.cc and, once, over all 2^32 bit patterns).
inline uint8_t FiniteF32ToE4M3Sat(float y) {
  const uint32_t u = F32Bits(y);
  const uint32_t sign = (u >> 24) & 0x80u;
  // `x < m ? x : m` is one minps; x is not NaN.
  const float clamped = F32FromBits(u & 0x7FFFFFFFu);
  const float mag = clamped < kE4M3Max ? clamped : kE4M3Max;
  const uint32_t a = F32Bits(mag);
  // Normal: rebias (7 - 127), add just under half an ulp plus the odd bit.
  const uint32_t normal =
      (a - (uint32_t{120} << 23) + 0x7FFFFu + ((a >> 20) & 1u)) >> 20;
  constexpr uint32_t kMagic = uint32_t{141} << 23;  // 2^14
  const uint32_t sub = F32Bits(mag + F32FromBits(kMagic)) - kMagic;
  // A mask blend, not `?:`: GCC would move the F32 addition into a branch
  // and then refuse to vectorise (it may trap under -ftrapping-math).
  const uint32_t is_sub = 0u - static_cast<uint32_t>(a < (uint32_t{121} << 23));
  const uint32_t q = (sub & is_sub) | (normal & ~is_sub);
  return static_cast<uint8_t>(sign | q);
}

/// F32ToBf16(f) for any F32, branch-free.
inline uint16_t F32ToBf16Branchless(float f) {
  const uint32_t u = F32Bits(f);
  const uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const uint32_t is_nan =
      0u - static_cast<uint32_t>((u & 0x7FFFFFFFu) > 0x7F800000u);
  return static_cast<uint16_t>((0x7FC0u & is_nan) | (r & ~is_nan));
}

/// F16ToF32(h) as F32 bits, branch-free. Subnormals (and zero) are
/// a * 2^-24 = (0.5 + a * 2^-24) - 0.5: one exact F32 subtraction of normal
/// numbers with a normal or zero result, so unaffected by FTZ/DAZ. Equal to
/// F16ToF32 for all 2^16 codes (float_cast_test.cc).
inline uint32_t F16ToF32BitsBranchless(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t a = h & 0x7FFFu;
  // Normal: rebias the exponent (15 -> 127); inf / NaN (exponent 31) get
  // another 112 to reach 255, keeping the payload.
  const uint32_t is_infnan = 0u - static_cast<uint32_t>(a >= 0x7C00u);
  const uint32_t normal =
      (a << 13) + (uint32_t{112} << 23) + (is_infnan & (uint32_t{112} << 23));
  constexpr uint32_t kHalf = uint32_t{126} << 23;
  const uint32_t sub = F32Bits(F32FromBits(kHalf | a) - F32FromBits(kHalf));
  const uint32_t is_sub = 0u - static_cast<uint32_t>(a < 0x400u);
  return sign | (sub & is_sub) | (normal & ~is_sub);
}

/// E4M3ToF32(x), branch-free. Subnormals are man * 2^-9 =
/// (2^-6 + man * 2^-9) - 2^-6, exact and unaffected by FTZ/DAZ. Equal to
/// E4M3ToF32 for all 256 codes (float_cast_test.cc).
inline float E4M3ToF32Branchless(uint8_t x) {
  const uint32_t sign = static_cast<uint32_t>(x & 0x80u) << 24;
  const uint32_t a = x & 0x7Fu;
  const uint32_t normal = (a << 20) + (uint32_t{120} << 23);
  constexpr uint32_t kMin = uint32_t{121} << 23;  // 2^-6
  const uint32_t sub =
      F32Bits(F32FromBits(kMin | (a << 20)) - F32FromBits(kMin));
  const uint32_t is_sub = 0u - static_cast<uint32_t>(a < 8u);
  const uint32_t is_nan = 0u - static_cast<uint32_t>(a == 0x7Fu);
  uint32_t q = (sub & is_sub) | (normal & ~is_sub);
  q = (0x7FF00000u & is_nan) | (q & ~is_nan);
  return F32FromBits(sign | q);
}

/// The dequantised element data * scale (an F32 multiplication) with every
/// NaN result as the canonical quiet NaN, bits 0x7FC00000: which operand's
/// payload and sign x86 returns for NaN * NaN follows the operand order the
/// compiler picks, so without this the bytes would depend on the build.
/// BF16 / F16 stores canonicalise NaN alike (0x7FC0, 0x7E00).
inline float DequantProduct(float data, float scale) {
  const uint32_t p = F32Bits(data * scale);
  const uint32_t is_nan =
      0u - static_cast<uint32_t>((p & 0x7FFFFFFFu) > 0x7F800000u);
  return F32FromBits((0x7FC00000u & is_nan) | (p & ~is_nan));
}

/// F32ToF16(f) for any F32, branch-free so that bulk loops vectorise.
/// Results below 2^-14 are rounded by one F32 addition (|f| + 0.5, whose ulp
/// is the F16 subnormal step 2^-24), exact RNE under the default rounding
/// mode and unaffected by FTZ/DAZ. Equal to F32ToF16 for every F32 bit
/// pattern (checked in float_cast_test.cc and, once, over all 2^32).
inline uint16_t F32ToF16Branchless(float f) {
  const uint32_t u = F32Bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7FFFFFFFu;
  uint32_t normal =
      (a - (uint32_t{112} << 23) + 0xFFFu + ((a >> 13) & 1u)) >> 13;
  normal = normal < 0x7C00u ? normal : 0x7C00u;
  constexpr uint32_t kMagic = uint32_t{126} << 23;  // 0.5
  const uint32_t sub = F32Bits(F32FromBits(a) + F32FromBits(kMagic)) - kMagic;
  // A mask blend, as in FiniteF32ToE4M3Sat.
  const uint32_t is_sub = 0u - static_cast<uint32_t>(a < (uint32_t{113} << 23));
  uint32_t q = (sub & is_sub) | (normal & ~is_sub);
  const uint32_t is_nan = 0u - static_cast<uint32_t>(a > 0x7F800000u);
  q = (0x7E00u & is_nan) | (q & ~is_nan);
  return static_cast<uint16_t>(sign | q);
}

/// Bytes per element of a wide float dtype, at compile time.
template <DType kDType>
inline constexpr size_t kWideSize = kDType == DType::kF32 ? 4 : 2;

/// Element `i` of a packed `kDType` buffer, as F32 bits (exact). Unaligned.
template <DType kDType>
inline uint32_t LoadF32Bits(const std::byte* p, size_t i) {
  if constexpr (kDType == DType::kF32) {
    uint32_t u;
    std::memcpy(&u, p + 4 * i, 4);
    return u;
  } else {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    if constexpr (kDType == DType::kBF16) {
      return static_cast<uint32_t>(h) << 16;
    } else {
      static_assert(kDType == DType::kF16);
      return F16ToF32BitsBranchless(h);
    }
  }
}

/// Element `i` of a packed `kDType` buffer, as F32 (exact). Unaligned.
template <DType kDType>
inline float LoadF32(const std::byte* p, size_t i) {
  return F32FromBits(LoadF32Bits<kDType>(p, i));
}

/// Stores `v` as element `i` of a packed `kDType` buffer, rounding with
/// F32ToBf16 / F32ToF16 for the narrow types. Unaligned.
template <DType kDType>
inline void StoreF32(std::byte* p, size_t i, float v) {
  if constexpr (kDType == DType::kF32) {
    std::memcpy(p + 4 * i, &v, 4);
  } else {
    uint16_t h;
    if constexpr (kDType == DType::kBF16) {
      h = F32ToBf16Branchless(v);
    } else {
      static_assert(kDType == DType::kF16);
      h = F32ToF16Branchless(v);
    }
    std::memcpy(p + 2 * i, &h, 2);
  }
}

/// Calls `fn(DTypeTag<d>{})` for d in {F32, BF16, F16} and returns its result.
/// The caller has already checked IsWideFloat(d); any other dtype is treated
/// as F32 (unreachable).
template <typename Fn>
inline auto DispatchWideFloat(DType d, Fn&& fn) {
  switch (d) {
    case DType::kBF16:
      return fn(DTypeTag<DType::kBF16>{});
    case DType::kF16:
      return fn(DTypeTag<DType::kF16>{});
    default:
      return fn(DTypeTag<DType::kF32>{});
  }
}

/// a * b when both are >= 0 and the product fits in int64, else -1.
constexpr int64_t CheckedMul(int64_t a, int64_t b) {
  if (a < 0 || b < 0) return -1;
  if (a != 0 && b > INT64_MAX / a) return -1;
  return a * b;
}

}  // namespace refit::quant::internal

#endif  // REFIT_CORE_QUANT_ELEMENT_ACCESS_H_
