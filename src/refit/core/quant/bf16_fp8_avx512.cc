// AVX-512 kernels for BF16 -> E4M3 (see bf16_fp8_avx512.h).
//
// One step handles 32 BF16 elements, one 64-byte load v: each 32-bit lane
// holds an even element (low half) and the next odd one (high half), so
//   |even| as F32 = (v & 0x7FFF7FFF) << 16,  |odd| as F32 = v & 0x7FFF0000
// with no widening shuffle. Each half is divided by the block's scale (or
// multiplied by an exact reciprocal), encoded as E4M3 (below), the two sets
// of codes are merged back into 16-bit lanes in element order, the signs are
// copied from the BF16 sign bits (x / s has the sign of x, also for -0), and
// vpmovwb narrows 32 words to 32 bytes.
//
// E4M3 encode of a finite q in [0, 464) in 6 instructions, exact RNE:
// with E = max(biased exponent of q, 121) (121: 2^-6, the smallest normal)
// and c = 2^(E - 127 + 20), the F32 sum q + c has an ulp of 2^(E - 127 - 3),
// which is E4M3's step for q's binade (and the subnormal step 2^-9 below
// 2^-5), and q < 2c; so the sum rounds q to the E4M3 grid, ties to even, and
// its low mantissa bits count the steps: code = bits(q + c) - bits(c) +
// (E - 121) * 8. Only the low byte is kept, in which bits(c) vanishes:
// code = low8(bits(q + c) + E * 8 + 56) (56 = -121 * 8 mod 256). |x / s| <
// 464 (the midpoint of 448 and the NaN code) makes saturation unnecessary:
// the largest codes round to 448 (0x7E). FTZ / DAZ change nothing (a
// subnormal q encodes to 0 either way). Checked against FiniteF32ToE4M3Sat
// for every F32 in [0, 464) once, and on random values in fast_path_test.cc.
//
// Division: vdivps is the slowest instruction here. For a scale s in
// [2^-64, 2^64] the kernel uses y = RN(1 / s), q0 = RN(x * y),
// r = x - q0 * s (one FMA, exact), q = RN(q0 + r * y) (Markstein's
// correction). For BF16 x this equals RN(x / s) exactly: x has an 8-bit
// significand, so with the exponents factored out (exact, as no step can
// underflow or overflow in that range of s for any quotient at or above
// 2^-11; smaller quotients encode to 0 however they are rounded) there are
// 128 x 2^23 significand pairs, all of which were checked once against
// vdivps. Other scales use vdivps; exact power-of-two scales multiply by
// their reciprocal as the portable code does.
#include "refit/core/quant/bf16_fp8_avx512.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define REFIT_QUANT_HAVE_AVX512_KERNELS 1
#include <immintrin.h>
#endif

namespace refit::quant::internal {

#ifdef REFIT_QUANT_HAVE_AVX512_KERNELS

// GCC 12's _mm512_undefined_* (a self-initialised variable behind most
// unmasked intrinsics) trips -Wmaybe-uninitialized once inlined; a known
// false positive (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace {

#define REFIT_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))
#define REFIT_AVX512_INLINE \
  REFIT_AVX512_TARGET __attribute__((always_inline)) inline

// How a block's elements are scaled.
enum class Op {
  kMul,        // x * y, y an exact reciprocal (or MXFP8's multiplier)
  kMarkstein,  // RN(x / s) from y = RN(1 / s) and two FMAs (see the top)
  kDiv,        // vdivps
};

template <Op kOp>
REFIT_AVX512_INLINE __m512 Scale(__m512 x, __m512 s, __m512 y) {
  if constexpr (kOp == Op::kMul) {
    return _mm512_mul_ps(x, y);
  } else if constexpr (kOp == Op::kMarkstein) {
    const __m512 q0 = _mm512_mul_ps(x, y);
    const __m512 r = _mm512_fnmadd_ps(q0, s, x);  // x - q0 * s, exact
    return _mm512_fmadd_ps(r, y, q0);
  } else {
    return _mm512_div_ps(x, s);
  }
}

// E4M3 codes of 16 finite q in [0, 464), in the low byte of each lane, less
// 56 (added later, per 16-bit lane). See the top of the file.
REFIT_AVX512_INLINE __m512i EncodeLow8(__m512 q) {
  const __m512i e = _mm512_max_epu32(
      _mm512_and_si512(_mm512_castps_si512(q), _mm512_set1_epi32(0x7F800000)),
      _mm512_set1_epi32(121 << 23));
  const __m512i c = _mm512_add_epi32(e, _mm512_set1_epi32(20 << 23));
  const __m512i sum =
      _mm512_castps_si512(_mm512_add_ps(q, _mm512_castsi512_ps(c)));
  return _mm512_add_epi32(sum, _mm512_srli_epi32(e, 20));
}

// The BF16 magnitude bits below which an element's quotient by s (or
// product with y) is below 2^-11 and so encodes to ±0 whatever the rounding
// (E4M3's smallest step is 2^-9, its first midpoint 2^-10): the BF16 bits
// b with b << 16 < bits(t), t = s * 2^-11 exactly (`tiny` = t). 0 (flush
// nothing) unless t is a normal F32. Flushing those elements to ±0 first
// keeps subnormal operands out of the multiplies and FMAs, which cost
// microcode assists on x86: the same bytes, much faster on weights with
// many tiny values.
inline uint16_t FlushBelow(float tiny) {
  uint32_t t;
  std::memcpy(&t, &tiny, 4);
  if (t < 0x00800000u || t >= 0x7F800000u) return 0;
  return static_cast<uint16_t>((t + 0xFFFFu) >> 16);
}

// The E4M3 codes of the 32 BF16 elements in v, in order, as 32 bytes.
// Elements whose magnitude bits are below `flush` (FlushBelow) become ±0.
template <Op kOp>
REFIT_AVX512_INLINE __m256i Quantize32(__m512i v, __m512 s, __m512 y,
                                       __m512i flush) {
  const __m512i all = _mm512_and_si512(v, _mm512_set1_epi32(0x7FFF7FFF));
  const __m512i mag =
      _mm512_maskz_mov_epi16(_mm512_cmpge_epu16_mask(all, flush), all);
  const __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(mag, 16));
  const __m512 odd = _mm512_castsi512_ps(
      _mm512_and_si512(mag, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
  const __m512i ce = EncodeLow8(Scale<kOp>(even, s, y));
  const __m512i co = EncodeLow8(Scale<kOp>(odd, s, y));
  // Word 2i: even code (low half of ce), word 2i + 1: odd code. Ternary-logic
  // 0xCA is "a ? b : c" bitwise.
  __m512i w = _mm512_ternarylogic_epi32(_mm512_set1_epi32(0x0000FFFF), ce,
                                        _mm512_slli_epi32(co, 16), 0xCA);
  w = _mm512_add_epi16(w, _mm512_set1_epi16(56));
  // Sign bits 15 and 31 of v to bits 7 and 23 (code bit 7 is 0): 0xF8 is
  // "a | (b & c)".
  w = _mm512_ternarylogic_epi32(w, _mm512_srli_epi32(v, 8),
                                _mm512_set1_epi32(0x00800080), 0xF8);
  return _mm512_cvtepi16_epi8(w);
}

// dst[j] = E4M3 of src[j] scaled per kOp, j in [0, len); any alignment.
// `tiny`: s * 2^-11 (the quotients below it encode to ±0; FlushBelow).
template <Op kOp>
REFIT_AVX512_INLINE void QuantizeSpan(const std::byte* src, size_t len, float s,
                                      float y, float tiny, std::byte* dst) {
  const __m512 vs = _mm512_set1_ps(s);
  const __m512 vy = _mm512_set1_ps(y);
  const __m512i vf = _mm512_set1_epi16(static_cast<short>(FlushBelow(tiny)));
  size_t j = 0;
  // Two independent steps per iteration, for instruction-level parallelism.
  for (; j + 64 <= len; j += 64) {
    const __m512i a = _mm512_loadu_si512(src + 2 * j);
    const __m512i b = _mm512_loadu_si512(src + 2 * j + 64);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + j),
                        Quantize32<kOp>(a, vs, vy, vf));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + j + 32),
                        Quantize32<kOp>(b, vs, vy, vf));
  }
  for (; j < len; j += 32) {
    // Masked: lanes past the end are neither read nor written.
    const size_t n = std::min<size_t>(32, len - j);
    const __mmask32 m = static_cast<__mmask32>((uint64_t{1} << n) - 1);
    const __m512i a = _mm512_maskz_loadu_epi16(m, src + 2 * j);
    _mm256_mask_storeu_epi8(dst + j, m, Quantize32<kOp>(a, vs, vy, vf));
  }
}

REFIT_AVX512_TARGET void BlockFp8Row(const std::byte* row, int64_t k,
                                     int64_t bc, const float* scales,
                                     const float* recips, std::byte* out) {
  for (int64_t c0 = 0, gc = 0; c0 < k; c0 += bc, ++gc) {
    const size_t len = static_cast<size_t>(std::min(bc, k - c0));
    const std::byte* src = row + static_cast<size_t>(c0) * 2;
    std::byte* dst = out + c0;
    const float r = recips[gc];
    const float s = scales[gc];
    const float tiny = s * 0x1p-11f;  // exact when normal (FlushBelow)
    if (r != 0.0f) {
      QuantizeSpan<Op::kMul>(src, len, s, r, tiny, dst);
    } else if (s >= 0x1p-64f && s <= 0x1p64f) {
      QuantizeSpan<Op::kMarkstein>(src, len, s, 1.0f / s, tiny, dst);
    } else {
      QuantizeSpan<Op::kDiv>(src, len, s, 0.0f, tiny, dst);
    }
  }
}

REFIT_AVX512_TARGET void Mxfp8Row(const std::byte* row, size_t k,
                                  const float* mult, std::byte* out) {
  for (size_t c = 0; c < k; c += 32) {
    const __m512 y = _mm512_set1_ps(mult[c]);
    // The block's scale is 1 / mult[c] (a power of two): x * mult[c] <
    // 2^-11 when |x| < 2^-11 / mult[c].
    const __m512i flush =
        _mm512_set1_epi16(static_cast<short>(FlushBelow(0x1p-11f / mult[c])));
    _mm256_storeu_si256(
        reinterpret_cast<__m256i*>(out + c),
        Quantize32<Op::kMul>(_mm512_loadu_si512(row + 2 * c), y, y, flush));
  }
}

bool CpuHasAvx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}

std::atomic<bool> g_enabled{true};

}  // namespace

bool UseBf16Avx512() {
  static const bool kCpu = CpuHasAvx512();
  return kCpu && g_enabled.load(std::memory_order_relaxed);
}

void SetBf16Avx512Enabled(bool enabled) {
  g_enabled.store(enabled, std::memory_order_relaxed);
}

void QuantizeBlockFp8RowBf16Avx512(const std::byte* row, int64_t k, int64_t bc,
                                   const float* scales, const float* recips,
                                   std::byte* out) {
  BlockFp8Row(row, k, bc, scales, recips, out);
}

void QuantizeMxfp8RowBf16Avx512(const std::byte* row, size_t k,
                                const float* mult, std::byte* out) {
  Mxfp8Row(row, k, mult, out);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#else  // !REFIT_QUANT_HAVE_AVX512_KERNELS: never selected.

bool UseBf16Avx512() { return false; }
void SetBf16Avx512Enabled(bool) {}
void QuantizeBlockFp8RowBf16Avx512(const std::byte*, int64_t, int64_t,
                                   const float*, const float*, std::byte*) {}
void QuantizeMxfp8RowBf16Avx512(const std::byte*, size_t, const float*,
                                std::byte*) {}

#endif  // REFIT_QUANT_HAVE_AVX512_KERNELS

}  // namespace refit::quant::internal
