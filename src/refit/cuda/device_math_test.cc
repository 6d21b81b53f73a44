// The device kernels' per-element arithmetic (device_math.h), run on the
// host, against the CPU kernels: bit for bit, every BF16 / F16 value and
// random F32 bit patterns; block FP8 over random shapes, dtypes and options;
// MXFP8 (plain and 128x4-swizzled scales) on every F32 magnitude up to 448,
// every BF16 / F16 value, block amaxes around 448 * 2^j and random tensors.
#include "refit/cuda/device_math.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "refit/core/quant/block_fp8.h"
#include "refit/core/quant/mxfp8.h"
#include "refit/core/quant/scale_swizzle.h"

namespace refit::cuda {
namespace {

std::vector<std::byte> Bytes(const std::vector<uint32_t>& bits, DType d) {
  const size_t size = DTypeSize(d);
  std::vector<std::byte> out(bits.size() * size);
  for (size_t i = 0; i < bits.size(); ++i) {
    std::memcpy(out.data() + i * size, &bits[i], size);  // little-endian
  }
  return out;
}

// Every 16-bit pattern, or random and special F32 patterns.
std::vector<uint32_t> Inputs(DType d) {
  std::vector<uint32_t> v;
  if (d != DType::kF32) {
    for (uint32_t i = 0; i < 65536; ++i) v.push_back(i);
    return v;
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 1 << 20; ++i) v.push_back(rng());
  for (uint32_t s : {0u, 0x80000000u}) {
    for (uint32_t m : {0x0u, 0x1u, 0x7FFFu, 0x8000u, 0x7FFFFFu, 0x400000u}) {
      for (uint32_t e : {0x0u, 0x1u, 0x70u, 0x71u, 0x8Fu, 0xFEu, 0xFFu}) {
        v.push_back(s | (e << 23) | m);
      }
    }
  }
  return v;
}

class CastTest : public ::testing::TestWithParam<std::pair<DType, DType>> {};

TEST_P(CastTest, MatchesCastBufferBitForBit) {
  const auto [from, to] = GetParam();
  const std::vector<uint32_t> in = Inputs(from);
  const std::vector<std::byte> in_bytes = Bytes(in, from);
  std::vector<std::byte> want(in.size() * DTypeSize(to));
  ASSERT_TRUE(quant::CastBuffer(in_bytes, from, want, to).ok());
  std::vector<uint32_t> got(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    got[i] = F32ToWide(WideToF32(in[i], from), to);
  }
  const std::vector<std::byte> got_bytes = Bytes(got, to);
  for (size_t i = 0; i < in.size(); ++i) {
    ASSERT_EQ(std::memcmp(got_bytes.data() + i * DTypeSize(to),
                          want.data() + i * DTypeSize(to), DTypeSize(to)),
              0)
        << DTypeName(from) << " -> " << DTypeName(to) << " of 0x" << std::hex
        << in[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Device, CastTest,
                         ::testing::Values(std::pair{DType::kF32, DType::kBF16},
                                           std::pair{DType::kF32, DType::kF16},
                                           std::pair{DType::kBF16, DType::kF32},
                                           std::pair{DType::kBF16, DType::kF16},
                                           std::pair{DType::kF16, DType::kF32},
                                           std::pair{DType::kF16,
                                                     DType::kBF16}));

// The device kernel's algorithm on the host: per block, amax by max, the
// scale, then every element.
void QuantizeLikeTheKernel(const std::vector<float>& x, int64_t n, int64_t k,
                           const quant::BlockFp8Options& o,
                           std::vector<uint8_t>& data,
                           std::vector<float>& scale) {
  const int64_t br = o.block.rows, bc = o.block.cols;
  const int64_t gc = (k + bc - 1) / bc, gr = (n + br - 1) / br;
  data.assign(n * k, 0);
  scale.assign(gr * gc, 0.0f);
  for (int64_t R = 0; R < gr; ++R) {
    for (int64_t C = 0; C < gc; ++C) {
      float amax = 0.0f;
      for (int64_t r = R * br; r < std::min(n, (R + 1) * br); ++r) {
        for (int64_t c = C * bc; c < std::min(k, (C + 1) * bc); ++c) {
          amax = std::fmax(amax, std::fabs(x[r * k + c]));
        }
      }
      const float s = BlockScaleInv(
          amax, o.min_amax, o.scale_format == quant::BlockScaleFormat::kUe8m0);
      scale[R * gc + C] = s;
      for (int64_t r = R * br; r < std::min(n, (R + 1) * br); ++r) {
        for (int64_t c = C * bc; c < std::min(k, (C + 1) * bc); ++c) {
          data[r * k + c] = QuantizeE4M3(x[r * k + c], s);
        }
      }
    }
  }
}

TEST(DeviceMathTest, BlockFp8MatchesQuantizeBlockFp8) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 24; ++trial) {
    const int64_t n = 1 + rng() % 300, k = 1 + rng() % 300;
    const DType dtype =
        std::vector{DType::kF32, DType::kBF16, DType::kF16}[trial % 3];
    quant::BlockFp8Options o;
    if (trial % 4 == 1) o.block = {32, 64};
    if (trial % 2) o.scale_format = quant::BlockScaleFormat::kUe8m0;
    if (trial % 5 == 0) o.min_amax = 1e-4f;
    // Values spanning magnitudes, some blocks all zero or tiny.
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<uint32_t> bits(n * k);
    std::vector<float> x(n * k);
    const float mag = std::ldexp(1.0f, static_cast<int>(rng() % 40) - 30);
    for (int64_t i = 0; i < n * k; ++i) {
      const float v =
          (trial % 7 == 3 && i < n * k / 2) ? 0.0f : normal(rng) * mag;
      bits[i] = F32ToWide(v, dtype);
      x[i] = WideToF32(bits[i], dtype);
    }
    std::vector<std::byte> want_data(n * k);
    std::vector<std::byte> want_scale(((n + o.block.rows - 1) / o.block.rows) *
                                      ((k + o.block.cols - 1) / o.block.cols) *
                                      4);
    ASSERT_TRUE(quant::QuantizeBlockFp8(Bytes(bits, dtype), dtype, n, k, o,
                                        want_data, want_scale)
                    .ok());
    std::vector<uint8_t> data;
    std::vector<float> scale;
    QuantizeLikeTheKernel(x, n, k, o, data, scale);
    ASSERT_EQ(std::memcmp(data.data(), want_data.data(), data.size()), 0)
        << "trial " << trial << " [" << n << ", " << k << "]";
    ASSERT_EQ(std::memcmp(scale.data(), want_scale.data(), want_scale.size()),
              0)
        << "trial " << trial;
  }
}

// ---- MXFP8 ----

struct Mxfp8Out {
  std::vector<std::byte> data, scales;
  int64_t bad = -1;  // smallest linear index of a non-finite element
};

// QuantizeMxfp8Device's algorithm on the host: the scale buffer zeroed (the
// swizzled padding), then per 32-element block (one warp on the device, lane
// j holding element j): the amax as the max of the magnitude bits, the scale
// byte at its (swizzled) offset, every element with the block's factor.
Mxfp8Out QuantizeMxfp8LikeTheKernel(const std::vector<uint32_t>& bits,
                                    DType dtype, int64_t m, int64_t k,
                                    bool swizzled) {
  const int64_t cols = k / 32;
  Mxfp8Out out;
  out.data.assign(m * k, std::byte{0});
  out.scales.assign(swizzled ? quant::Swizzled128x4Bytes(m, cols) : m * cols,
                    std::byte{0});
  for (int64_t b = 0; b < m * cols; ++b) {
    float x[32];
    uint32_t amax = 0;
    for (int j = 0; j < 32; ++j) {
      x[j] = WideToF32(bits[b * 32 + j], dtype);
      const uint32_t mag = MagnitudeBits(x[j]);
      if (mag >= 0x7F800000u && out.bad < 0) out.bad = b * 32 + j;
      amax = std::max(amax, mag);
    }
    const uint8_t e = Mxfp8BlockExponent(amax);
    const int64_t row = b / cols, col = b % cols;
    out.scales[Mxfp8ScaleOffset(row, col, cols, swizzled)] =
        static_cast<std::byte>(e);
    const float factor = Mxfp8QuantFactor(e);
    for (int j = 0; j < 32; ++j) {
      out.data[b * 32 + j] =
          static_cast<std::byte>(QuantizeMxfp8Element(x[j], factor));
    }
  }
  return out;
}

// quant::QuantizeMxfp8 (then quant::Swizzle128x4 for swizzled scales).
Mxfp8Out QuantizeMxfp8OnCpu(const std::vector<uint32_t>& bits, DType dtype,
                            int64_t m, int64_t k, bool swizzled) {
  const int64_t cols = k / 32;
  Mxfp8Out out;
  out.data.resize(m * k);
  out.scales.resize(m * cols);
  const Status st = quant::QuantizeMxfp8(Bytes(bits, dtype), dtype, m, k,
                                         out.data, out.scales);
  EXPECT_TRUE(st.ok()) << st.message();
  if (swizzled) {
    std::vector<std::byte> sw(quant::Swizzled128x4Bytes(m, cols),
                              std::byte{0x5A});  // padding must become 0
    EXPECT_TRUE(quant::Swizzle128x4(out.scales, m, cols, sw).ok());
    out.scales = std::move(sw);
  }
  return out;
}

// Both, compared byte for byte; the first differing byte is named.
void ExpectMxfp8Match(const std::vector<uint32_t>& bits, DType dtype, int64_t m,
                      int64_t k, bool swizzled, const std::string& what) {
  const Mxfp8Out want = QuantizeMxfp8OnCpu(bits, dtype, m, k, swizzled);
  const Mxfp8Out got = QuantizeMxfp8LikeTheKernel(bits, dtype, m, k, swizzled);
  ASSERT_EQ(got.bad, -1) << what;
  ASSERT_EQ(got.data.size(), want.data.size()) << what;
  const auto d =
      std::mismatch(got.data.begin(), got.data.end(), want.data.begin());
  if (d.first != got.data.end()) {
    const int64_t i = d.first - got.data.begin();
    FAIL() << what << " " << DTypeName(dtype) << " [" << m << ", " << k
           << "]: element " << i << " (input bits 0x" << std::hex << bits[i]
           << ") gives 0x" << static_cast<int>(*d.first) << ", CPU 0x"
           << static_cast<int>(*d.second);
  }
  ASSERT_EQ(got.scales.size(), want.scales.size()) << what;
  const auto s =
      std::mismatch(got.scales.begin(), got.scales.end(), want.scales.begin());
  if (s.first != got.scales.end()) {
    FAIL() << what << " " << DTypeName(dtype) << " [" << m << ", " << k
           << "] swizzled=" << swizzled << ": scale byte "
           << (s.first - got.scales.begin()) << " is 0x" << std::hex
           << static_cast<int>(*s.first) << ", CPU 0x"
           << static_cast<int>(*s.second);
  }
}

// Every positive F32 value up to 448 (and a stride of the negative ones) as
// an element of a block whose amax is 448 (scale byte 127, factor 1): the
// element conversion against the CPU kernel's on its whole range.
TEST(DeviceMathTest, Mxfp8EveryF32MagnitudeUpTo448) {
  constexpr uint32_t kMax = 0x43E00000u;  // 448
  constexpr int64_t kBlocksPerCall = 1 << 16, kK = 32 * 64;
  std::vector<uint32_t> bits;
  bits.reserve(kBlocksPerCall * 32);
  auto flush = [&] {
    if (bits.empty()) return;
    while (bits.size() % kK != 0) bits.push_back(0);
    ExpectMxfp8Match(bits, DType::kF32, bits.size() / kK, kK, false,
                     "F32 <= 448");
    bits.clear();
  };
  uint64_t next = 0;
  while (next <= kMax && !::testing::Test::HasFatalFailure()) {
    bits.push_back(kMax);
    for (int j = 0; j < 31; ++j) {
      const uint32_t u = static_cast<uint32_t>(std::min<uint64_t>(next, kMax));
      // Every value; its negative for one in 61.
      bits.push_back(next % 61 == 0 ? u | 0x80000000u : u);
      ++next;
    }
    if (bits.size() == kBlocksPerCall * 32) flush();
  }
  flush();
}

// Every finite BF16 / F16 value, in blocks of neighbours (amax near the
// value) and shuffled (mixed magnitudes), plain and swizzled scales.
TEST(DeviceMathTest, Mxfp8EveryBf16AndF16Value) {
  for (DType d : {DType::kBF16, DType::kF16}) {
    std::vector<uint32_t> bits;
    for (uint32_t i = 0; i < 65536; ++i) {
      if (!std::isfinite(WideToF32(i, d))) continue;
      bits.push_back(i);
    }
    while (bits.size() % (32 * 16) != 0) bits.push_back(0);
    const int64_t k = 32 * 16, m = static_cast<int64_t>(bits.size()) / k;
    ExpectMxfp8Match(bits, d, m, k, false, "sorted");
    ExpectMxfp8Match(bits, d, m, k, true, "sorted");
    std::mt19937 rng(d == DType::kBF16 ? 1 : 2);
    std::shuffle(bits.begin(), bits.end(), rng);
    ExpectMxfp8Match(bits, d, m, k, false, "shuffled");
    ExpectMxfp8Match(bits, d, m, k, true, "shuffled");
  }
}

// Blocks whose amax sits at, just below and just above 448 * 2^j for every j
// that F32 reaches, the smallest subnormals, F32's largest value, zeros and
// -0; the other elements are fractions of the amax on E4M3 rounding
// boundaries and random ones, in F32, BF16 and F16.
TEST(DeviceMathTest, Mxfp8EdgeAmaxes) {
  std::vector<float> amaxes = {0.0f,
                               std::numeric_limits<float>::denorm_min(),
                               2 * std::numeric_limits<float>::denorm_min(),
                               std::numeric_limits<float>::min(),
                               std::numeric_limits<float>::max(),
                               1.0f,
                               464.0f,
                               480.0f};
  for (int j = -160; j <= 128; ++j) {
    const float a = std::ldexp(448.0f, j);
    if (a == 0.0f || !std::isfinite(a)) continue;
    amaxes.push_back(a);
    amaxes.push_back(std::nextafter(a, 0.0f));
    amaxes.push_back(std::nextafter(a, std::numeric_limits<float>::max()));
    amaxes.push_back(std::ldexp(1.0f, j));
    amaxes.push_back(std::ldexp(464.0f, j));  // rounds past 448 at scale 2^j
  }
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> frac(-1.0f, 1.0f);
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16}) {
    std::vector<uint32_t> bits;
    for (float a : amaxes) {
      const uint32_t ab = F32ToWide(a, d);
      const float aw = WideToF32(ab, d);  // the amax as the dtype holds it
      if (!std::isfinite(aw)) continue;
      for (int sign = 0; sign < 2; ++sign) {
        const size_t start = bits.size();
        bits.push_back(F32ToWide(sign ? -aw : aw, d));
        // E4M3 rounding boundaries relative to the amax: midpoints between
        // codes near the top, the subnormal range, and -0.
        for (float f : {0.9375f, 0.96875f, 0.5f, 0.53125f, 0.0009765625f,
                        0.001953125f, 0.0029296875f, -0.0f}) {
          bits.push_back(F32ToWide(aw * f, d));
        }
        while (bits.size() - start < 32) {
          bits.push_back(F32ToWide(aw * frac(rng), d));
        }
      }
    }
    const int64_t k = 32, m = static_cast<int64_t>(bits.size()) / 32;
    ExpectMxfp8Match(bits, d, m, k, false, "edge amax");
    ExpectMxfp8Match(bits, d, m, k, true, "edge amax");
  }
}

// Random tensors: normal values over a random magnitude, some all-zero rows,
// row counts that are not multiples of 128, plain and swizzled scales.
TEST(DeviceMathTest, Mxfp8RandomTensors) {
  std::mt19937 rng(23);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int trial = 0; trial < 36; ++trial) {
    const int64_t m = 1 + rng() % 300, k = 32 * (1 + rng() % 12);
    const DType d =
        std::vector{DType::kF32, DType::kBF16, DType::kF16}[trial % 3];
    const float mag = std::ldexp(1.0f, static_cast<int>(rng() % 60) - 40);
    std::vector<uint32_t> bits(m * k);
    for (int64_t i = 0; i < m * k; ++i) {
      const bool zero = trial % 5 == 2 && (i / k) % 3 == 0;
      bits[i] = F32ToWide(zero ? 0.0f : normal(rng) * mag, d);
    }
    ExpectMxfp8Match(bits, d, m, k, trial % 2 == 1,
                     "trial " + std::to_string(trial));
  }
}

// Mxfp8ScaleOffset against Swizzle128x4 on matrices of distinct 16-bit cell
// numbers (swizzled one byte at a time), and the padding (zero) cells.
TEST(DeviceMathTest, Mxfp8ScaleOffsetMatchesSwizzle128x4) {
  for (int64_t rows : {1, 31, 127, 128, 129, 300}) {
    for (int64_t cols : {1, 3, 4, 5, 9}) {
      std::vector<int> cell(quant::Swizzled128x4Bytes(rows, cols), 0);
      for (int byte = 0; byte < 2; ++byte) {
        std::vector<std::byte> in(rows * cols);
        for (int64_t i = 0; i < rows * cols; ++i) {
          in[i] = static_cast<std::byte>(((i + 1) >> (8 * byte)) & 0xFF);
        }
        std::vector<std::byte> out(cell.size());
        ASSERT_TRUE(quant::Swizzle128x4(in, rows, cols, out).ok());
        for (size_t o = 0; o < out.size(); ++o) {
          cell[o] |= static_cast<int>(out[o]) << (8 * byte);
        }
      }
      std::vector<int> want(cell.size(), 0);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t o = Mxfp8ScaleOffset(r, c, cols, true);
          ASSERT_GE(o, 0);
          ASSERT_LT(o, static_cast<int64_t>(want.size()));
          want[o] = static_cast<int>(r * cols + c + 1);
          ASSERT_EQ(Mxfp8ScaleOffset(r, c, cols, false), r * cols + c);
        }
      }
      EXPECT_EQ(cell, want) << "[" << rows << ", " << cols << "]";
    }
  }
}

// The kernel's non-finite test (magnitude bits >= 0x7F800000) is exactly
// "not finite" for every BF16 / F16 value, and the element it names (the
// smallest linear index) is the one quant::QuantizeMxfp8 names.
TEST(DeviceMathTest, Mxfp8NonFiniteInput) {
  for (DType d : {DType::kBF16, DType::kF16}) {
    for (uint32_t i = 0; i < 65536; ++i) {
      const float x = WideToF32(i, d);
      ASSERT_EQ(MagnitudeBits(x) >= 0x7F800000u, !std::isfinite(x))
          << DTypeName(d) << " 0x" << std::hex << i;
    }
  }
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16}) {
    const int64_t m = 5, k = 96;
    std::vector<uint32_t> bits(m * k, F32ToWide(1.0f, d));
    bits[3 * k + 70] = F32ToWide(-inf, d);
    bits[3 * k + 40] = F32ToWide(nan, d);
    bits[4 * k + 1] = F32ToWide(inf, d);
    const Mxfp8Out got = QuantizeMxfp8LikeTheKernel(bits, d, m, k, false);
    EXPECT_EQ(got.bad, 3 * k + 40);
    std::vector<std::byte> data(m * k), scales(m * k / 32);
    const Status st =
        quant::QuantizeMxfp8(Bytes(bits, d), d, m, k, data, scales);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("[3, 40]"), std::string::npos) << st.message();
  }
}

}  // namespace
}  // namespace refit::cuda
