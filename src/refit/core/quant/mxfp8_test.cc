#include "refit/core/quant/mxfp8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "refit/core/quant/float_cast.h"
#include "refit/core/quant/test_bytes.h"

namespace refit::quant {
namespace {

using testing::AsBytes;
using testing::AsWritableBytes;

struct Mx {
  std::vector<uint8_t> data;
  std::vector<uint8_t> scales;
};

Mx Quantize(const std::vector<float>& x, int64_t m, int64_t k) {
  Mx q{std::vector<uint8_t>(x.size()),
       std::vector<uint8_t>(static_cast<size_t>(m * (k / 32)))};
  const Status s =
      QuantizeMxfp8(AsBytes(x), DType::kF32, m, k, AsWritableBytes(q.data),
                    AsWritableBytes(q.scales));
  EXPECT_TRUE(s.ok()) << s.ToString();
  return q;
}

std::vector<float> Dequantize(const Mx& q, int64_t m, int64_t k) {
  std::vector<float> out(static_cast<size_t>(m * k));
  const Status s = DequantizeMxfp8(AsBytes(q.data), AsBytes(q.scales), m, k,
                                   AsWritableBytes(out), DType::kF32);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

TEST(Mxfp8ScaleTest, ScaleExponentForKnownAmax) {
  EXPECT_EQ(Mxfp8ScaleExponent(448.0f), 127);  // 448 / 448 = 2^0
  EXPECT_EQ(Mxfp8ScaleExponent(449.0f), 128);  // just above: rounded up
  EXPECT_EQ(Mxfp8ScaleExponent(896.0f), 128);  // 2^1 exactly
  EXPECT_EQ(Mxfp8ScaleExponent(224.0f), 126);
  EXPECT_EQ(Mxfp8ScaleExponent(300.0f), 127);
  EXPECT_EQ(Mxfp8ScaleExponent(1.0f), 119);  // 1/448 = 2^-8.8 -> 2^-8
  EXPECT_EQ(Mxfp8ScaleExponent(448.0f * 0x1p-20f), 107);
  EXPECT_EQ(Mxfp8ScaleExponent(std::numeric_limits<float>::max()), 247);
  // All-zero block, and an amax whose amax / 448 underflows to 0.
  EXPECT_EQ(Mxfp8ScaleExponent(0.0f), 0);
  EXPECT_EQ(Mxfp8ScaleExponent(std::numeric_limits<float>::denorm_min()), 0);
  // amax / 448 an F32 subnormal: rounds up to the smallest normal, 2^-126.
  EXPECT_EQ(Mxfp8ScaleExponent(0x1p-130f), 1);
}

TEST(Mxfp8ScaleTest, E8M0Decoding) {
  EXPECT_EQ(E8M0ToF32(127), 1.0f);
  EXPECT_EQ(E8M0ToF32(128), 2.0f);
  EXPECT_EQ(E8M0ToF32(119), 0x1p-8f);
  EXPECT_EQ(E8M0ToF32(254), 0x1p127f);
  EXPECT_EQ(F32Bits(E8M0ToF32(1)), 0x00800000u);  // 2^-126
  EXPECT_EQ(F32Bits(E8M0ToF32(0)), 0x00400000u);  // 2^-127, subnormal
  EXPECT_TRUE(std::isnan(E8M0ToF32(255)));
}

TEST(Mxfp8Test, HandVectors) {
  // [2, 64]: four blocks.
  std::vector<float> x(2 * 64, 0.0f);
  // Row 0, block 0: amax 448 -> e = 127, elements RNE(x).
  const float b00[] = {448.0f, 1.0f, -2.0f, 0.1f, 3.25f, -448.0f};
  std::copy(std::begin(b00), std::end(b00), x.begin());
  // Row 0, block 1: all 3.0 -> 3 / 448 -> 2^-7 (e = 120); 3 * 2^7 = 384.
  std::fill(x.begin() + 32, x.begin() + 64, 3.0f);
  // Row 1, block 0: zeros (one -0) -> e = 0, elements ±0.
  x[64 + 7] = -0.0f;
  // Row 1, block 1: amax 449 -> e = 128; 449 / 2 = 224.5 -> 224 (0x76);
  // -1 / 2 -> 0xB0.
  x[96] = 449.0f;
  x[97] = -1.0f;
  const Mx q = Quantize(x, 2, 64);
  EXPECT_EQ(q.scales, (std::vector<uint8_t>{127, 120, 0, 128}));
  std::vector<uint8_t> want(2 * 64, 0x00);
  const uint8_t w00[] = {0x7E, 0x38, 0xC0, 0x1D, 0x45, 0xFE};
  std::copy(std::begin(w00), std::end(w00), want.begin());
  std::fill(want.begin() + 32, want.begin() + 64, 0x7C);  // 384 = 0.1111.100
  want[64 + 7] = 0x80;
  want[96] = 0x76;
  want[97] = 0xB0;
  EXPECT_EQ(q.data, want);
  const std::vector<float> back = Dequantize(q, 2, 64);
  EXPECT_EQ(back[0], 448.0f);
  EXPECT_EQ(back[3], 0.1015625f);
  EXPECT_EQ(back[40], 3.0f);
  EXPECT_EQ(back[96], 448.0f);
  EXPECT_EQ(back[97], -1.0f);
  EXPECT_EQ(back[64 + 7], 0.0f);
}

TEST(Mxfp8Test, RoundTripWithinOneUlpAndNeverAbove448) {
  const int64_t m = 70, k = 256;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = normal(rng) * std::ldexp(1.0f, static_cast<int>(i / 32 % 40) - 20);
  }
  const Mx q = Quantize(x, m, k);
  const std::vector<float> back = Dequantize(q, m, k);
  for (size_t i = 0; i < x.size(); ++i) {
    const uint8_t e = q.scales[i / 32];
    ASSERT_NE(e, 0);
    const double s = std::ldexp(1.0, e - 127);
    const double y = x[i] / s;
    ASSERT_LE(std::fabs(y), 448.0) << i;
    const double a = std::fabs(y);
    const double ulp = a < 0x1p-6 ? 0x1p-9 : std::ldexp(1.0, std::ilogb(a) - 3);
    ASSERT_LE(std::fabs(double{back[i]} - x[i]), ulp * s) << i;
    ASSERT_EQ(q.data[i],
              F32ToE4M3(static_cast<float>(y), Fp8Overflow::kSaturate));
  }
  // Each block's scale is the smallest power of two that keeps its amax
  // within 448: halving it would push the amax above 448.
  for (int64_t b = 0; b < m * k / 32; ++b) {
    float amax = 0.0f;
    for (int64_t j = 0; j < 32; ++j) {
      amax = std::max(amax, std::fabs(x[static_cast<size_t>(b * 32 + j)]));
    }
    const int e = q.scales[static_cast<size_t>(b)];
    EXPECT_LE(amax, 448.0 * std::ldexp(1.0, e - 127));
    EXPECT_GT(amax, 448.0 * std::ldexp(1.0, e - 128));
  }
}

TEST(Mxfp8Test, Bf16InputEqualsItsF32Value) {
  const int64_t m = 3, k = 96;
  std::vector<uint16_t> bf16(static_cast<size_t>(m * k));
  std::vector<float> f32(bf16.size());
  for (size_t i = 0; i < bf16.size(); ++i) {
    bf16[i] = F32ToBf16(std::sin(static_cast<float>(i)) * (1 + i % 50));
    f32[i] = Bf16ToF32(bf16[i]);
  }
  Mx q{std::vector<uint8_t>(bf16.size()),
       std::vector<uint8_t>(static_cast<size_t>(m * k / 32))};
  ASSERT_TRUE(QuantizeMxfp8(AsBytes(bf16), DType::kBF16, m, k,
                            AsWritableBytes(q.data), AsWritableBytes(q.scales))
                  .ok());
  const Mx want = Quantize(f32, m, k);
  EXPECT_EQ(q.data, want.data);
  EXPECT_EQ(q.scales, want.scales);
}

TEST(Mxfp8Test, DequantizeSpecialScales) {
  const std::vector<uint8_t> data(32, 0x38);  // 1.0
  std::vector<float> out(32);
  std::vector<uint8_t> scale = {0};
  ASSERT_TRUE(DequantizeMxfp8(AsBytes(data), AsBytes(scale), 1, 32,
                              AsWritableBytes(out), DType::kF32)
                  .ok());
  EXPECT_EQ(F32Bits(out[0]), 0x00400000u);  // 2^-127
  scale[0] = 0xFF;
  ASSERT_TRUE(DequantizeMxfp8(AsBytes(data), AsBytes(scale), 1, 32,
                              AsWritableBytes(out), DType::kF32)
                  .ok());
  EXPECT_TRUE(std::isnan(out[31]));
  scale[0] = 130;
  std::vector<uint16_t> bf16(32);
  ASSERT_TRUE(DequantizeMxfp8(AsBytes(data), AsBytes(scale), 1, 32,
                              AsWritableBytes(bf16), DType::kBF16)
                  .ok());
  EXPECT_EQ(bf16[0], 0x4100);  // 8.0
}

TEST(Mxfp8Test, Errors) {
  std::vector<float> x(2 * 48, 1.0f);
  std::vector<uint8_t> data(x.size()), scales(3);
  Status s = QuantizeMxfp8(AsBytes(x), DType::kF32, 2, 48,
                           AsWritableBytes(data), AsWritableBytes(scales));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("K = 48"), std::string::npos) << s.message();
  x.resize(2 * 64);
  data.resize(x.size());
  s = QuantizeMxfp8(AsBytes(x), DType::kF32, 2, 64, AsWritableBytes(data),
                    AsWritableBytes(scales));  // 3 scale bytes, not 4
  EXPECT_NE(s.message().find("scales has 3 bytes, expected 4"),
            std::string::npos)
      << s.message();
  scales.resize(4);
  EXPECT_EQ(QuantizeMxfp8(AsBytes(x), DType::kF8E5M2, 2, 64,
                          AsWritableBytes(data), AsWritableBytes(scales))
                .code(),
            StatusCode::kInvalidArgument);
  x[64 + 40] = std::numeric_limits<float>::quiet_NaN();
  s = QuantizeMxfp8(AsBytes(x), DType::kF32, 2, 64, AsWritableBytes(data),
                    AsWritableBytes(scales));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("[1, 40]"), std::string::npos) << s.message();
  std::vector<float> out(x.size());
  EXPECT_EQ(DequantizeMxfp8(AsBytes(data), AsBytes(scales), 2, 64,
                            AsWritableBytes(out), DType::kI8)
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(DequantizeMxfp8(AsBytes(data), AsBytes(scales), 2, 40,
                            AsWritableBytes(out), DType::kF32)
                .code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace refit::quant
