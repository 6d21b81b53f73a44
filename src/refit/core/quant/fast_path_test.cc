// The bulk kernels (vectorised, multiversioned, reciprocal multiplications
// where exact) against plain scalar references built from the scalar
// conversions of float_cast.h, element by element, on many random tensors:
// random bit patterns, zeros of both signs, subnormals of every format, ties
// of the target formats, values near each format's largest, partial edge
// blocks and odd block shapes, unaligned spans. Every byte must agree. The
// AVX-512 BF16 kernels (bf16_fp8_avx512.h) are also run against the portable
// loops, on every BF16 significand under many scales.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <span>
#include <vector>

#include "refit/core/quant/bf16_fp8_avx512.h"
#include "refit/core/quant/block_fp8.h"
#include "refit/core/quant/element_access.h"
#include "refit/core/quant/float_cast.h"
#include "refit/core/quant/mxfp8.h"
#include "refit/core/quant/scale_swizzle.h"

namespace refit::quant {
namespace {

using Bytes = std::vector<std::byte>;

// ---------------------------------------------------------------------------
// Scalar references: one element at a time, the scalar conversions only.

float RefLoad(const Bytes& b, DType d, size_t i) {
  if (d == DType::kF32) {
    float f;
    std::memcpy(&f, b.data() + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, b.data() + 2 * i, 2);
  return d == DType::kBF16 ? Bf16ToF32(h) : F16ToF32(h);
}

void RefStore(Bytes& b, DType d, size_t i, float v) {
  if (d == DType::kF32) {
    std::memcpy(b.data() + 4 * i, &v, 4);
    return;
  }
  const uint16_t h = d == DType::kBF16 ? F32ToBf16(v) : F32ToF16(v);
  std::memcpy(b.data() + 2 * i, &h, 2);
}

Bytes RefCast(const Bytes& in, DType from, DType to) {
  if (from == to) return in;  // a copy: NaN payloads kept
  const size_t n = in.size() / DTypeSize(from);
  Bytes out(n * DTypeSize(to));
  for (size_t i = 0; i < n; ++i) RefStore(out, to, i, RefLoad(in, from, i));
  return out;
}

void RefQuantizeBlockFp8(const Bytes& in, DType d, int64_t n, int64_t k,
                         const BlockFp8Options& o, Bytes& data,
                         Bytes& scale_inv) {
  const GridShape g = BlockGrid(n, k, o.block);
  data.assign(static_cast<size_t>(n * k), std::byte{0});
  scale_inv.assign(static_cast<size_t>(g.count() * 4), std::byte{0});
  for (int64_t gr = 0; gr < g.rows; ++gr) {
    for (int64_t gc = 0; gc < g.cols; ++gc) {
      const int64_t r1 = std::min(n, (gr + 1) * o.block.rows);
      const int64_t c1 = std::min(k, (gc + 1) * o.block.cols);
      float amax = 0.0f;
      for (int64_t r = gr * o.block.rows; r < r1; ++r) {
        for (int64_t c = gc * o.block.cols; c < c1; ++c) {
          amax = std::max(
              amax, std::fabs(RefLoad(in, d, static_cast<size_t>(r * k + c))));
        }
      }
      const float s = BlockFp8ScaleInv(amax, o);
      std::memcpy(scale_inv.data() + (gr * g.cols + gc) * 4, &s, 4);
      for (int64_t r = gr * o.block.rows; r < r1; ++r) {
        for (int64_t c = gc * o.block.cols; c < c1; ++c) {
          const size_t i = static_cast<size_t>(r * k + c);
          data[i] = static_cast<std::byte>(
              F32ToE4M3(RefLoad(in, d, i) / s, Fp8Overflow::kSaturate));
        }
      }
    }
  }
}

// E4M3 code times scale; a NaN product is the canonical quiet NaN
// (DequantizeMxfp8, DequantizeBlockFp8).
float RefDequant(std::byte code, float scale) {
  const float v = E4M3ToF32(static_cast<uint8_t>(code)) * scale;
  return std::isnan(v) ? F32FromBits(0x7FC00000u) : v;
}

Bytes RefDequantizeBlockFp8(const Bytes& data, const Bytes& scale_inv,
                            int64_t n, int64_t k, BlockShape b, DType to) {
  const GridShape g = BlockGrid(n, k, b);
  Bytes out(static_cast<size_t>(n * k) * DTypeSize(to));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      float s;
      std::memcpy(
          &s, scale_inv.data() + ((r / b.rows) * g.cols + c / b.cols) * 4, 4);
      const size_t i = static_cast<size_t>(r * k + c);
      RefStore(out, to, i, RefDequant(data[i], s));
    }
  }
  return out;
}

void RefQuantizeMxfp8(const Bytes& in, DType d, int64_t m, int64_t k,
                      Bytes& data, Bytes& scales) {
  data.assign(static_cast<size_t>(m * k), std::byte{0});
  scales.assign(static_cast<size_t>(m * k / 32), std::byte{0});
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t b = 0; b < k / 32; ++b) {
      float amax = 0.0f;
      for (int64_t j = 0; j < 32; ++j) {
        amax = std::max(
            amax,
            std::fabs(RefLoad(in, d, static_cast<size_t>(r * k + b * 32 + j))));
      }
      const uint8_t e = Mxfp8ScaleExponent(amax);
      scales[static_cast<size_t>(r * (k / 32) + b)] = static_cast<std::byte>(e);
      const float q = e == 0 ? 0.0f : std::ldexp(1.0f, 127 - e);
      for (int64_t j = 0; j < 32; ++j) {
        const size_t i = static_cast<size_t>(r * k + b * 32 + j);
        data[i] = static_cast<std::byte>(
            F32ToE4M3(RefLoad(in, d, i) * q, Fp8Overflow::kSaturate));
      }
    }
  }
}

Bytes RefDequantizeMxfp8(const Bytes& data, const Bytes& scales, int64_t m,
                         int64_t k, DType to) {
  Bytes out(static_cast<size_t>(m * k) * DTypeSize(to));
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const size_t i = static_cast<size_t>(r * k + c);
      const float s = E8M0ToF32(static_cast<uint8_t>(
          scales[static_cast<size_t>(r * (k / 32) + c / 32)]));
      RefStore(out, to, i, RefDequant(data[i], s));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Random inputs.

// A random F32 from a mix of cases that stress the conversions. `finite`:
// never inf or NaN.
float RandomValue(std::mt19937_64& rng, bool finite) {
  const uint64_t r = rng();
  const uint32_t sign = static_cast<uint32_t>(r >> 63) << 31;
  const uint32_t bits = static_cast<uint32_t>(r >> 8);
  float v = 0.0f;
  switch (r % 8) {
    case 0:  // weight-like: exponent in [2^-30, 2^10)
      v = F32FromBits(sign | ((127u - 30u + (bits >> 24) % 40u) << 23) |
                      (bits & 0x7FFFFFu));
      break;
    case 1:  // zero
      v = F32FromBits(sign);
      break;
    case 2:  // F32 / BF16 / F16 subnormal range
      v = (bits & 1u) ? F32FromBits(sign | (bits & 0x7FFFFFu))
                      : std::ldexp(static_cast<float>(bits % 1024u), -24) *
                            (sign ? -1.0f : 1.0f);
      break;
    case 3: {  // an E4M3 code or midpoint, scaled by a power of two
      const float code = E4M3ToF32(static_cast<uint8_t>(bits % 0x7Fu));
      const float next = E4M3ToF32(static_cast<uint8_t>(bits % 0x7Fu + 1));
      const float base = (bits & 0x100u) ? (code + next) / 2 : code;
      v = std::ldexp(base, static_cast<int>((bits >> 9) % 40u) - 20) *
          (sign ? -1.0f : 1.0f);
      break;
    }
    case 4:  // near the largest BF16 / F16 / E4M3 magnitudes
      v = F32FromBits(sign |
                      (bits % 4u == 0   ? 0x7F7F0000u + (bits & 0xFFFFu)
                       : bits % 4u == 1 ? 0x477FE000u + (bits & 0x3FFFu)
                                        : 0x43E00000u + (bits & 0x1FFFFFu)));
      break;
    case 5:  // F16 / BF16 ties: a half-ulp pattern below the kept bits
      v = F32FromBits(sign | (((bits >> 23) % 60u + 100u) << 23) |
                      (bits & 0x7FE000u) | ((bits & 1u) ? 0x1000u : 0x8000u));
      break;
    default:  // any bit pattern
      v = F32FromBits(static_cast<uint32_t>(r));
      break;
  }
  if (finite && !std::isfinite(v)) v = F32FromBits(sign | 0x3F800000u);
  return v;
}

// n random elements of dtype `d` (finite after the cast when `finite`).
Bytes RandomTensor(std::mt19937_64& rng, DType d, size_t n, bool finite) {
  Bytes out(n * DTypeSize(d));
  for (size_t i = 0; i < n; ++i) {
    float v = RandomValue(rng, finite);
    RefStore(out, d, i, v);
    if (finite && !std::isfinite(RefLoad(out, d, i))) RefStore(out, d, i, 0.5f);
  }
  // Now and then a block-sized run of zeros or of one value.
  if (n > 300 && rng() % 3 == 0) {
    const size_t at = rng() % (n - 256);
    const float v = (rng() & 1) ? 0.0f : RandomValue(rng, true);
    for (size_t i = at; i < at + 256; ++i) RefStore(out, d, i, v);
    if (finite && !std::isfinite(RefLoad(out, d, at))) {
      for (size_t i = at; i < at + 256; ++i) RefStore(out, d, i, 0.0f);
    }
  }
  return out;
}

constexpr DType kWide[] = {DType::kF32, DType::kBF16, DType::kF16};

// The first differing byte, for the failure message.
::testing::AssertionResult SameBytes(const Bytes& got, const Bytes& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure()
           << "size " << got.size() << " vs " << want.size();
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      return ::testing::AssertionFailure()
             << "byte " << i << ": got " << static_cast<int>(got[i])
             << ", want " << static_cast<int>(want[i]);
    }
  }
  return ::testing::AssertionSuccess();
}

TEST(FastPathTest, CastBufferEqualsScalarReference) {
  std::mt19937_64 rng(1);
  for (DType from : kWide) {
    // Every 16-bit code, then random values (inf and NaN included), at an odd
    // offset so that no span is aligned.
    Bytes in;
    if (from != DType::kF32) {
      in.resize(2 * 65536);
      for (uint32_t h = 0; h < 65536; ++h) {
        const uint16_t c = static_cast<uint16_t>(h);
        std::memcpy(in.data() + 2 * h, &c, 2);
      }
    }
    const Bytes random = RandomTensor(rng, from, 200003, false);
    in.insert(in.end(), random.begin(), random.end());
    for (DType to : kWide) {
      const Bytes want = RefCast(in, from, to);
      const size_t n = in.size() / DTypeSize(from);
      Bytes src(in.size() + 1), dst(n * DTypeSize(to) + 1);
      std::memcpy(src.data() + 1, in.data(), in.size());
      ASSERT_TRUE(CastBuffer(std::span(src).subspan(1), from,
                             std::span(dst).subspan(1), to)
                      .ok());
      EXPECT_TRUE(SameBytes(Bytes(dst.begin() + 1, dst.end()), want))
          << DTypeName(from) << " -> " << DTypeName(to);
    }
  }
}

TEST(FastPathTest, BlockFp8EqualsScalarReference) {
  std::mt19937_64 rng(2);
  const BlockShape blocks[] = {{128, 128}, {128, 128}, {1, 32},
                               {3, 5},     {64, 256},  {7, 1}};
  for (int trial = 0; trial < 60; ++trial) {
    const DType d = kWide[trial % 3];
    BlockFp8Options o;
    o.block = blocks[rng() % std::size(blocks)];
    o.scale_format =
        (trial / 3) % 2 ? BlockScaleFormat::kUe8m0 : BlockScaleFormat::kF32;
    if (trial % 7 == 0) o.min_amax = 1e-4f;
    const int64_t n = 1 + static_cast<int64_t>(rng() % 300);
    const int64_t k = 1 + static_cast<int64_t>(rng() % 400);
    const Bytes in = RandomTensor(rng, d, static_cast<size_t>(n * k), true);
    Bytes want_data, want_scale;
    RefQuantizeBlockFp8(in, d, n, k, o, want_data, want_scale);
    Bytes data(want_data.size()), scale(want_scale.size());
    ASSERT_TRUE(QuantizeBlockFp8(in, d, n, k, o, data, scale).ok());
    ASSERT_TRUE(SameBytes(scale, want_scale)) << "trial " << trial;
    ASSERT_TRUE(SameBytes(data, want_data)) << "trial " << trial;
    for (DType to : kWide) {
      Bytes out(static_cast<size_t>(n * k) * DTypeSize(to));
      ASSERT_TRUE(DequantizeBlockFp8(data, scale, n, k, o.block, out, to).ok());
      ASSERT_TRUE(
          SameBytes(out, RefDequantizeBlockFp8(data, scale, n, k, o.block, to)))
          << "trial " << trial << " to " << DTypeName(to);
    }
  }
}

// Tensors whose blocks have amax = 448 * 2^j (a power-of-two scale, so the
// quantiser multiplies by its reciprocal) and elements on E4M3 midpoints.
TEST(FastPathTest, BlockFp8PowerOfTwoScalesAndTies) {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 30; ++trial) {
    const DType d = kWide[trial % 3];
    const int64_t n = 128 + static_cast<int64_t>(rng() % 100);
    const int64_t k = 256 + static_cast<int64_t>(rng() % 100);
    const int shift = static_cast<int>(rng() % 20) - 14;
    Bytes in(static_cast<size_t>(n * k) * DTypeSize(d));
    for (size_t i = 0; i < static_cast<size_t>(n * k); ++i) {
      const uint8_t c = static_cast<uint8_t>(rng() % 0x7E);
      const float mid =
          (E4M3ToF32(c) + E4M3ToF32(static_cast<uint8_t>(c + 1))) / 2;
      const float v = std::ldexp(i % 97 == 0 ? 448.0f : mid, shift);
      RefStore(in, d, i, (rng() & 1) ? -v : v);
    }
    for (BlockScaleFormat f :
         {BlockScaleFormat::kF32, BlockScaleFormat::kUe8m0}) {
      BlockFp8Options o;
      o.scale_format = f;
      Bytes want_data, want_scale;
      RefQuantizeBlockFp8(in, d, n, k, o, want_data, want_scale);
      Bytes data(want_data.size()), scale(want_scale.size());
      ASSERT_TRUE(QuantizeBlockFp8(in, d, n, k, o, data, scale).ok());
      ASSERT_TRUE(SameBytes(scale, want_scale)) << "trial " << trial;
      ASSERT_TRUE(SameBytes(data, want_data)) << "trial " << trial;
    }
  }
}

TEST(FastPathTest, Mxfp8EqualsScalarReference) {
  std::mt19937_64 rng(4);
  for (int trial = 0; trial < 60; ++trial) {
    const DType d = kWide[trial % 3];
    const int64_t m = 1 + static_cast<int64_t>(rng() % 200);
    const int64_t k = 32 * (1 + static_cast<int64_t>(rng() % 20));
    const Bytes in = RandomTensor(rng, d, static_cast<size_t>(m * k), true);
    Bytes want_data, want_scales;
    RefQuantizeMxfp8(in, d, m, k, want_data, want_scales);
    Bytes data(want_data.size()), scales(want_scales.size());
    ASSERT_TRUE(QuantizeMxfp8(in, d, m, k, data, scales).ok());
    ASSERT_TRUE(SameBytes(scales, want_scales)) << "trial " << trial;
    ASSERT_TRUE(SameBytes(data, want_data)) << "trial " << trial;
    // Random scale bytes too (0 and 0xFF included) for the dequantiser.
    if (trial % 2) {
      for (std::byte& s : scales) s = static_cast<std::byte>(rng());
    }
    for (DType to : kWide) {
      Bytes out(static_cast<size_t>(m * k) * DTypeSize(to));
      ASSERT_TRUE(DequantizeMxfp8(data, scales, m, k, out, to).ok());
      ASSERT_TRUE(SameBytes(out, RefDequantizeMxfp8(data, scales, m, k, to)))
          << "trial " << trial << " to " << DTypeName(to);
    }
  }
}

TEST(FastPathTest, DequantizeEveryCodeAndScale) {
  // All 256 codes against many scales (F32 scale_inv: subnormal, huge,
  // powers of two; E8M0: every byte).
  const int64_t k = 256;
  Bytes data(k);
  for (int c = 0; c < 256; ++c) data[c] = static_cast<std::byte>(c);
  for (int e = 0; e < 256; ++e) {
    const Bytes scales(k / 32, static_cast<std::byte>(e));
    for (DType to : kWide) {
      Bytes out(k * DTypeSize(to));
      ASSERT_TRUE(DequantizeMxfp8(data, scales, 1, k, out, to).ok());
      ASSERT_TRUE(SameBytes(out, RefDequantizeMxfp8(data, scales, 1, k, to)))
          << "e " << e;
    }
  }
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 500; ++trial) {
    const float s = std::fabs(RandomValue(rng, true));
    Bytes scale(4);
    std::memcpy(scale.data(), &s, 4);
    for (DType to : kWide) {
      Bytes out(k * DTypeSize(to));
      ASSERT_TRUE(
          DequantizeBlockFp8(data, scale, 1, k, {1, 256}, out, to).ok());
      ASSERT_TRUE(SameBytes(
          out, RefDequantizeBlockFp8(data, scale, 1, k, {1, 256}, to)))
          << "scale bits " << F32Bits(s);
    }
  }
}

TEST(FastPathTest, SwizzleEqualsOffsetFormula) {
  std::mt19937_64 rng(6);
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t rows = static_cast<int64_t>(rng() % 400);
    const int64_t cols = static_cast<int64_t>(rng() % 20);
    Bytes in(static_cast<size_t>(rows * cols));
    for (std::byte& b : in) b = static_cast<std::byte>(rng() | 1);
    Bytes want(static_cast<size_t>(Swizzled128x4Bytes(rows, cols)));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        want[static_cast<size_t>(Swizzled128x4Offset(r, c, cols))] =
            in[static_cast<size_t>(r * cols + c)];
      }
    }
    Bytes out(want.size(), std::byte{0x55});
    ASSERT_TRUE(Swizzle128x4(in, rows, cols, out).ok());
    ASSERT_TRUE(SameBytes(out, want)) << rows << " x " << cols;
    Bytes back(in.size());
    ASSERT_TRUE(Unswizzle128x4(out, rows, cols, back).ok());
    ASSERT_TRUE(SameBytes(back, in)) << rows << " x " << cols;
  }
}

// The branch-free decoders equal the scalar ones on every code.
TEST(FastPathTest, BranchlessDecodersEqualScalar) {
  for (uint32_t h = 0; h < 65536; ++h) {
    ASSERT_EQ(internal::F16ToF32BitsBranchless(static_cast<uint16_t>(h)),
              F32Bits(F16ToF32(static_cast<uint16_t>(h))))
        << h;
  }
  for (uint32_t c = 0; c < 256; ++c) {
    ASSERT_EQ(F32Bits(internal::E4M3ToF32Branchless(static_cast<uint8_t>(c))),
              F32Bits(E4M3ToF32(static_cast<uint8_t>(c))))
        << c;
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 1000000; ++i) {
    const float f = F32FromBits(static_cast<uint32_t>(rng()));
    ASSERT_EQ(internal::F32ToBf16Branchless(f), F32ToBf16(f)) << F32Bits(f);
  }
}

// ---------------------------------------------------------------------------
// The AVX-512 BF16 kernels against the portable loops (and the reference).

// Selects the AVX-512 kernels (where the CPU has them) or the portable loops
// for its lifetime.
class ScopedBf16Avx512 {
 public:
  explicit ScopedBf16Avx512(bool on) { internal::SetBf16Avx512Enabled(on); }
  ~ScopedBf16Avx512() { internal::SetBf16Avx512Enabled(true); }
};

struct Quantized {
  Bytes data, scales;
};

// Block FP8 of BF16 `in`, through spans that start one byte into their
// buffers (no alignment), with the AVX-512 kernel on or off.
Quantized BlockFp8Bf16(const Bytes& in, int64_t n, int64_t k,
                       const BlockFp8Options& o, bool avx512) {
  const ScopedBf16Avx512 scoped(avx512);
  const GridShape g = BlockGrid(n, k, o.block);
  Bytes src(in.size() + 1), data(static_cast<size_t>(n * k) + 1),
      scale(static_cast<size_t>(g.count() * 4) + 1);
  std::memcpy(src.data() + 1, in.data(), in.size());
  EXPECT_TRUE(QuantizeBlockFp8(std::span(src).subspan(1), DType::kBF16, n, k, o,
                               std::span(data).subspan(1),
                               std::span(scale).subspan(1))
                  .ok());
  return {Bytes(data.begin() + 1, data.end()),
          Bytes(scale.begin() + 1, scale.end())};
}

Quantized Mxfp8Bf16(const Bytes& in, int64_t m, int64_t k, bool avx512) {
  const ScopedBf16Avx512 scoped(avx512);
  Bytes src(in.size() + 1), data(static_cast<size_t>(m * k) + 1),
      scales(static_cast<size_t>(m * k / 32) + 1);
  std::memcpy(src.data() + 1, in.data(), in.size());
  EXPECT_TRUE(QuantizeMxfp8(std::span(src).subspan(1), DType::kBF16, m, k,
                            std::span(data).subspan(1),
                            std::span(scales).subspan(1))
                  .ok());
  return {Bytes(data.begin() + 1, data.end()),
          Bytes(scales.begin() + 1, scales.end())};
}

TEST(FastPathTest, Bf16Avx512EqualsPortable) {
  if (!internal::UseBf16Avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  std::mt19937_64 rng(8);
  // Odd widths and partial edge blocks exercise the masked tails.
  const BlockShape blocks[] = {{128, 128}, {1, 32}, {3, 5},
                               {64, 256},  {7, 1},  {2, 67}};
  for (int trial = 0; trial < 60; ++trial) {
    BlockFp8Options o;
    o.block = blocks[rng() % std::size(blocks)];
    o.scale_format =
        trial % 2 ? BlockScaleFormat::kUe8m0 : BlockScaleFormat::kF32;
    if (trial % 5 == 0) o.min_amax = 1e-4f;
    const int64_t n = 1 + static_cast<int64_t>(rng() % 300);
    const int64_t k = 1 + static_cast<int64_t>(rng() % 400);
    const Bytes in =
        RandomTensor(rng, DType::kBF16, static_cast<size_t>(n * k), true);
    const Quantized simd = BlockFp8Bf16(in, n, k, o, true);
    const Quantized portable = BlockFp8Bf16(in, n, k, o, false);
    ASSERT_TRUE(SameBytes(simd.scales, portable.scales)) << "trial " << trial;
    ASSERT_TRUE(SameBytes(simd.data, portable.data)) << "trial " << trial;
    Bytes want_data, want_scale;
    RefQuantizeBlockFp8(in, DType::kBF16, n, k, o, want_data, want_scale);
    ASSERT_TRUE(SameBytes(simd.data, want_data)) << "trial " << trial;

    const int64_t mk = 32 * (1 + static_cast<int64_t>(rng() % 20));
    const Bytes mx =
        RandomTensor(rng, DType::kBF16, static_cast<size_t>(n * mk), true);
    const Quantized mx_simd = Mxfp8Bf16(mx, n, mk, true);
    const Quantized mx_portable = Mxfp8Bf16(mx, n, mk, false);
    ASSERT_TRUE(SameBytes(mx_simd.scales, mx_portable.scales))
        << "trial " << trial;
    ASSERT_TRUE(SameBytes(mx_simd.data, mx_portable.data)) << "trial " << trial;
  }
}

// Every BF16 significand, both signs, over 17 binades below 2^e (and zeros,
// and with e small, BF16 subnormals), divided by scales with random
// significands: min_amax >= amax sets s = min_amax / 448. Covers the
// kernel's FMA-corrected division (2^-64 <= s <= 2^64), its vdivps fallback
// (s outside that range) and power-of-two scales (multiplication).
TEST(FastPathTest, Bf16Avx512EverySignificandUnderManyScales) {
  if (!internal::UseBf16Avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  std::mt19937_64 rng(9);
  const int64_t n = 17;
  const int64_t k = 2 * 128 + 3;  // + zeros; not a multiple of 32
  for (int trial = 0; trial < 400; ++trial) {
    const int e = static_cast<int>(rng() % 260) - 130;  // top binade 2^e
    Bytes in(static_cast<size_t>(n * k) * 2);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < k; ++c) {
        const int be = std::clamp(e + 127 - static_cast<int>(r), 0, 254);
        const uint32_t sign = c >= 128 && c < 256 ? 0x8000u : 0u;
        const uint16_t h =
            c >= 256 ? static_cast<uint16_t>(sign)
                     : static_cast<uint16_t>(sign | (be << 7) | (c % 128));
        std::memcpy(in.data() + 2 * (r * k + c), &h, 2);
      }
    }
    BlockFp8Options o;
    o.block = {static_cast<int64_t>(1 + rng() % n), 128};
    o.scale_format =
        trial % 8 == 7 ? BlockScaleFormat::kUe8m0 : BlockScaleFormat::kF32;
    // 2^(e + 1) <= min_amax < 2^(e + 4), a random significand, finite.
    const int me = std::clamp(e + 1 + static_cast<int>(rng() % 3), -149, 127);
    o.min_amax = std::ldexp(
        1.0f + static_cast<float>(rng() % (1u << 23)) * 0x1p-23f, me);
    if (trial % 2) {
      // A scale within a few ulps of X / M for a BF16 significand X and an
      // E4M3 midpoint significand M: the quotients of X land within a few
      // F32 ulps of an E4M3 rounding boundary, on both sides.
      const float x = 1.0f + static_cast<float>(rng() % 128) * 0x1p-7f;
      const float mid = 1.0f + static_cast<float>(2 * (rng() % 8) + 1) / 16;
      const float s = F32FromBits(F32Bits(std::ldexp(x / mid, me - 8)) +
                                  static_cast<uint32_t>(rng() % 7) - 3u);
      o.min_amax = s * kE4M3Max;
    }
    if (!std::isfinite(o.min_amax)) o.min_amax = 0x1p127f;
    const Quantized simd = BlockFp8Bf16(in, n, k, o, true);
    const Quantized portable = BlockFp8Bf16(in, n, k, o, false);
    ASSERT_TRUE(SameBytes(simd.scales, portable.scales)) << "trial " << trial;
    ASSERT_TRUE(SameBytes(simd.data, portable.data))
        << "trial " << trial << " e " << e << " min_amax " << o.min_amax;
    if (trial % 20 == 0) {
      Bytes want_data, want_scale;
      RefQuantizeBlockFp8(in, DType::kBF16, n, k, o, want_data, want_scale);
      ASSERT_TRUE(SameBytes(simd.data, want_data)) << "trial " << trial;
    }
  }
}

}  // namespace
}  // namespace refit::quant
