#include "refit/core/quant/block_fp8.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "refit/core/quant/block_grid.h"
#include "refit/core/quant/float_cast.h"
#include "refit/core/quant/test_bytes.h"

namespace refit::quant {
namespace {

using testing::AsBytes;
using testing::AsWritableBytes;

struct Quantized {
  std::vector<uint8_t> data;
  std::vector<float> scale_inv;
};

// Quantises an F32 [n, k] tensor; fails the test on error.
Quantized Quantize(const std::vector<float>& x, int64_t n, int64_t k,
                   const BlockFp8Options& options = {}) {
  const GridShape grid = BlockGrid(n, k, options.block);
  Quantized q{std::vector<uint8_t>(x.size()),
              std::vector<float>(static_cast<size_t>(grid.count()))};
  const Status s =
      QuantizeBlockFp8(AsBytes(x), DType::kF32, n, k, options,
                       AsWritableBytes(q.data), AsWritableBytes(q.scale_inv));
  EXPECT_TRUE(s.ok()) << s.ToString();
  return q;
}

std::vector<float> Dequantize(const Quantized& q, int64_t n, int64_t k,
                              BlockShape block = {}) {
  std::vector<float> out(static_cast<size_t>(n * k));
  const Status s =
      DequantizeBlockFp8(AsBytes(q.data), AsBytes(q.scale_inv), n, k, block,
                         AsWritableBytes(out), DType::kF32);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

// Normal(0, 1) values times a factor that differs per 128 x 128 block, so
// every block has its own scale.
std::vector<float> RandomTensor(int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const float factor = std::ldexp(
          1.0f, static_cast<int>((r / 64 * 7 + c / 64 * 3) % 11) - 5);
      x[static_cast<size_t>(r * k + c)] = normal(rng) * factor;
    }
  }
  return x;
}

// The largest |x| over rows [r0, r1) x cols [c0, c1) of x [n, k].
float Amax(const std::vector<float>& x, int64_t k, int64_t r0, int64_t r1,
           int64_t c0, int64_t c1) {
  float m = 0.0f;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t c = c0; c < c1; ++c) {
      m = std::max(m, std::fabs(x[static_cast<size_t>(r * k + c)]));
    }
  }
  return m;
}

// One E4M3 ulp at the magnitude of y (normal binades: 2^(e - 3); the
// subnormal range: 2^-9).
double E4M3Ulp(double y) {
  const double a = std::fabs(y);
  if (a < std::ldexp(1.0, -6)) return std::ldexp(1.0, -9);
  return std::ldexp(1.0, std::ilogb(a) - 3);
}

TEST(BlockFp8ScaleTest, ScaleRules) {
  const BlockFp8Options f32;
  EXPECT_EQ(BlockFp8ScaleInv(448.0f, f32), 1.0f);
  EXPECT_EQ(BlockFp8ScaleInv(896.0f, f32), 2.0f);
  EXPECT_EQ(BlockFp8ScaleInv(3.0f, f32), 3.0f / 448.0f);
  // Decision: an all-zero block gets scale_inv 1 (Transformer Engine's rule).
  EXPECT_EQ(BlockFp8ScaleInv(0.0f, f32), 1.0f);
  // amax / 448 underflowing to 0 is treated like a zero block.
  EXPECT_EQ(BlockFp8ScaleInv(std::numeric_limits<float>::denorm_min(), f32),
            1.0f);

  BlockFp8Options clamped;
  clamped.min_amax = 1e-4f;  // DeepSeek act_quant
  EXPECT_EQ(BlockFp8ScaleInv(0.0f, clamped), 1e-4f / 448.0f);
  EXPECT_EQ(BlockFp8ScaleInv(5e-5f, clamped), 1e-4f / 448.0f);
  EXPECT_EQ(BlockFp8ScaleInv(3.0f, clamped), 3.0f / 448.0f);

  BlockFp8Options ue8m0;
  ue8m0.scale_format = BlockScaleFormat::kUe8m0;
  EXPECT_EQ(BlockFp8ScaleInv(448.0f, ue8m0), 1.0f);  // 2^0 exactly
  EXPECT_EQ(BlockFp8ScaleInv(449.0f, ue8m0), 2.0f);  // rounded up
  EXPECT_EQ(BlockFp8ScaleInv(224.0f, ue8m0), 0.5f);
  EXPECT_EQ(BlockFp8ScaleInv(300.0f, ue8m0), 1.0f);   // 0.67 -> 1
  EXPECT_EQ(BlockFp8ScaleInv(1.0f, ue8m0), 0x1p-8f);  // 1/448 -> 2^-8
  EXPECT_EQ(BlockFp8ScaleInv(0.0f, ue8m0), 1.0f);
  // An amax / 448 in the F32 subnormal range rounds up to 2^-126.
  EXPECT_EQ(BlockFp8ScaleInv(0x1p-130f, ue8m0), 0x1p-126f);
}

TEST(BlockFp8Test, UnitScaleGivesRoundedElements) {
  // amax 448 -> scale_inv 1 -> elements RNE(x). One partial block [2, 3].
  const std::vector<float> x = {448.0f, 1.0f, -2.0f, 0.1f, 3.25f, -448.0f};
  const Quantized q = Quantize(x, 2, 3);
  EXPECT_EQ(q.data, (std::vector<uint8_t>{0x7E, 0x38, 0xC0, 0x1D, 0x45, 0xFE}));
  EXPECT_EQ(q.scale_inv, std::vector<float>{1.0f});
}

TEST(BlockFp8Test, PowerOfTwoScale) {
  // amax 896 -> scale_inv 2: elements RNE(x / 2) = 448, 1, -0.25, 3.25, 0.1,
  // -448.
  const std::vector<float> x = {896.0f, 2.0f, -0.5f, 6.5f, 0.2f, -896.0f};
  const Quantized q = Quantize(x, 3, 2);
  EXPECT_EQ(q.data, (std::vector<uint8_t>{0x7E, 0x38, 0xA8, 0x45, 0x1D, 0xFE}));
  EXPECT_EQ(q.scale_inv, std::vector<float>{2.0f});
  EXPECT_EQ(Dequantize(q, 3, 2), (std::vector<float>{896.0f, 2.0f, -0.5f, 6.5f,
                                                     0.203125f, -896.0f}));
}

TEST(BlockFp8Test, AllEqualBlock) {
  for (float v : {3.0f, 0.1f, 1e-3f, 1234.5f, -7.0f, 448.0f}) {
    const std::vector<float> x(128 * 128, v);
    const Quantized q = Quantize(x, 128, 128);
    EXPECT_EQ(q.scale_inv, std::vector<float>{std::fabs(v) / 448.0f}) << v;
    const uint8_t want = v < 0 ? 0xFE : 0x7E;  // ±448
    EXPECT_TRUE(std::all_of(q.data.begin(), q.data.end(), [&](uint8_t b) {
      return b == want;
    })) << v;
  }
}

TEST(BlockFp8Test, ZeroBlockHasUnitScaleAndZeroElements) {
  std::vector<float> x(4 * 4, 0.0f);
  x[5] = -0.0f;
  const Quantized q = Quantize(x, 4, 4);
  EXPECT_EQ(q.scale_inv, std::vector<float>{1.0f});
  std::vector<uint8_t> want(16, 0x00);
  want[5] = 0x80;  // -0 keeps its sign
  EXPECT_EQ(q.data, want);
  for (float d : Dequantize(q, 4, 4)) EXPECT_EQ(d, 0.0f);

  // One zero block inside a larger tensor; the other blocks are unaffected.
  std::vector<float> y = RandomTensor(256, 256, 1);
  for (int64_t r = 0; r < 128; ++r) {
    for (int64_t c = 128; c < 256; ++c) y[static_cast<size_t>(r * 256 + c)] = 0;
  }
  const Quantized qy = Quantize(y, 256, 256);
  EXPECT_EQ(qy.scale_inv[1], 1.0f);
  EXPECT_EQ(qy.scale_inv[0], Amax(y, 256, 0, 128, 0, 128) / 448.0f);

  // With DeepSeek's amax clamp the zero block's scale is 1e-4 / 448.
  BlockFp8Options clamped;
  clamped.min_amax = 1e-4f;
  EXPECT_EQ(Quantize(x, 4, 4, clamped).scale_inv,
            std::vector<float>{1e-4f / 448.0f});
}

TEST(BlockFp8Test, EdgeBlocksUseOnlyRealElements) {
  // [130, 200] with 128 x 128 blocks: grid [2, 2]; blocks (0, 1), (1, 0) and
  // (1, 1) are partial.
  const int64_t n = 130, k = 200;
  const std::vector<float> x = RandomTensor(n, k, 2);
  const Quantized q = Quantize(x, n, k);
  ASSERT_EQ(q.scale_inv.size(), 4u);
  const int64_t rows[3] = {0, 128, 130}, cols[3] = {0, 128, 200};
  for (int gr = 0; gr < 2; ++gr) {
    for (int gc = 0; gc < 2; ++gc) {
      const float s = q.scale_inv[static_cast<size_t>(gr * 2 + gc)];
      EXPECT_EQ(s, Amax(x, k, rows[gr], rows[gr + 1], cols[gc], cols[gc + 1]) /
                       448.0f)
          << gr << "," << gc;
      for (int64_t r = rows[gr]; r < rows[gr + 1]; ++r) {
        for (int64_t c = cols[gc]; c < cols[gc + 1]; ++c) {
          const size_t i = static_cast<size_t>(r * k + c);
          ASSERT_EQ(q.data[i], F32ToE4M3(x[i] / s, Fp8Overflow::kSaturate))
              << r << "," << c;
        }
      }
    }
  }
  // The block holding each amax reaches ±448 exactly.
  EXPECT_NE(std::find_if(q.data.begin(), q.data.end(),
                         [](uint8_t b) { return (b & 0x7F) == 0x7E; }),
            q.data.end());
}

TEST(BlockFp8Test, ConfigurableBlockShapes) {
  const int64_t n = 130, k = 200;
  const std::vector<float> x = RandomTensor(n, k, 3);
  for (BlockShape block : {BlockShape{64, 64}, BlockShape{1, 128},
                           BlockShape{128, 32}, BlockShape{7, 9}}) {
    BlockFp8Options options;
    options.block = block;
    const GridShape grid = BlockGrid(n, k, block);
    const Quantized q = Quantize(x, n, k, options);
    ASSERT_EQ(q.scale_inv.size(), static_cast<size_t>(grid.count()));
    for (int64_t gr = 0; gr < grid.rows; ++gr) {
      for (int64_t gc = 0; gc < grid.cols; ++gc) {
        EXPECT_EQ(
            q.scale_inv[static_cast<size_t>(gr * grid.cols + gc)],
            Amax(x, k, gr * block.rows, std::min(n, (gr + 1) * block.rows),
                 gc * block.cols, std::min(k, (gc + 1) * block.cols)) /
                448.0f);
      }
    }
    const std::vector<float> back = Dequantize(q, n, k, block);
    for (size_t i = 0; i < x.size(); ++i) {
      const int64_t r = static_cast<int64_t>(i) / k;
      const int64_t c = static_cast<int64_t>(i) % k;
      const float s = q.scale_inv[static_cast<size_t>(
          r / block.rows * grid.cols + c / block.cols)];
      ASSERT_LE(std::fabs(double{back[i]} - x[i]), E4M3Ulp(x[i] / s) * s) << i;
    }
  }
  EXPECT_EQ(BlockGrid(130, 200, {64, 64}).rows, 3);
  EXPECT_EQ(BlockGrid(130, 200, {64, 64}).cols, 4);
}

TEST(BlockFp8Test, Ue8m0Scales) {
  BlockFp8Options options;
  options.scale_format = BlockScaleFormat::kUe8m0;
  // amax 449 -> scale 2 (rounded up); elements RNE(x / 2): 224.5 -> 224.
  const std::vector<float> x = {449.0f, 3.0f, -1.0f, 0.0f};
  const Quantized q = Quantize(x, 2, 2, options);
  EXPECT_EQ(q.scale_inv, std::vector<float>{2.0f});
  // 224 = 1.75 * 2^7: 0.1110.110; 1.5: 0.0111.100; -0.5: 1.0110.000.
  EXPECT_EQ(q.data, (std::vector<uint8_t>{0x76, 0x3C, 0xB0, 0x00}));

  const std::vector<float> y = RandomTensor(130, 200, 4);
  const Quantized qy = Quantize(y, 130, 200, options);
  for (float s : qy.scale_inv) {
    int e = 0;
    EXPECT_EQ(std::frexp(s, &e), 0.5f) << s;  // a power of two
  }
  const std::vector<float> back = Dequantize(qy, 130, 200);
  for (size_t i = 0; i < y.size(); ++i) {
    const int64_t r = static_cast<int64_t>(i) / 200;
    const int64_t c = static_cast<int64_t>(i) % 200;
    const float s = qy.scale_inv[static_cast<size_t>(r / 128 * 2 + c / 128)];
    ASSERT_LE(std::fabs(y[i] / s), 448.0f);
    ASSERT_LE(std::fabs(double{back[i]} - y[i]), E4M3Ulp(y[i] / s) * s) << i;
  }
}

TEST(BlockFp8Test, RoundTripWithinOneUlp) {
  const int64_t n = 300, k = 260;
  const std::vector<float> x = RandomTensor(n, k, 5);
  const Quantized q = Quantize(x, n, k);
  const std::vector<float> back = Dequantize(q, n, k);
  const GridShape grid = BlockGrid(n, k, {});
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t r = static_cast<int64_t>(i) / k;
    const int64_t c = static_cast<int64_t>(i) % k;
    const float s =
        q.scale_inv[static_cast<size_t>(r / 128 * grid.cols + c / 128)];
    // Exactly: back = E4M3ToF32(data) * s.
    ASSERT_EQ(back[i], E4M3ToF32(q.data[i]) * s);
    ASSERT_LE(std::fabs(double{back[i]} - x[i]), E4M3Ulp(x[i] / s) * s) << i;
  }
  // BF16 and F16 outputs are the F32 product rounded once.
  std::vector<uint16_t> bf16(x.size());
  ASSERT_TRUE(DequantizeBlockFp8(AsBytes(q.data), AsBytes(q.scale_inv), n, k,
                                 {}, AsWritableBytes(bf16), DType::kBF16)
                  .ok());
  std::vector<uint16_t> f16(x.size());
  ASSERT_TRUE(DequantizeBlockFp8(AsBytes(q.data), AsBytes(q.scale_inv), n, k,
                                 {}, AsWritableBytes(f16), DType::kF16)
                  .ok());
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(bf16[i], F32ToBf16(back[i]));
    ASSERT_EQ(f16[i], F32ToF16(back[i]));
  }
}

TEST(BlockFp8Test, Bf16AndF16InputsEqualTheirF32Values) {
  const int64_t n = 130, k = 200;
  const std::vector<float> x = RandomTensor(n, k, 6);
  std::vector<uint16_t> bf16(x.size()), f16(x.size());
  std::vector<float> x_bf16(x.size()), x_f16(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    bf16[i] = F32ToBf16(x[i]);
    x_bf16[i] = Bf16ToF32(bf16[i]);
    f16[i] = F32ToF16(x[i]);
    x_f16[i] = F16ToF32(f16[i]);
  }
  for (auto [in, dtype, as_f32] : {std::tuple{&bf16, DType::kBF16, &x_bf16},
                                   std::tuple{&f16, DType::kF16, &x_f16}}) {
    Quantized q{std::vector<uint8_t>(x.size()), std::vector<float>(4)};
    ASSERT_TRUE(QuantizeBlockFp8(AsBytes(*in), dtype, n, k, {},
                                 AsWritableBytes(q.data),
                                 AsWritableBytes(q.scale_inv))
                    .ok());
    const Quantized want = Quantize(*as_f32, n, k);
    EXPECT_EQ(q.data, want.data);
    EXPECT_EQ(q.scale_inv, want.scale_inv);
  }
}

TEST(BlockGridTest, WholeBlockRule) {
  const BlockShape b{128, 128};
  // [130, 200]: rows cut at 128, columns at 128.
  EXPECT_TRUE(HoldsWholeBlocks(130, 200, b, 0, 130, 0, 200));
  EXPECT_TRUE(HoldsWholeBlocks(130, 200, b, 0, 128, 0, 200));
  EXPECT_TRUE(HoldsWholeBlocks(130, 200, b, 128, 130, 0, 200));
  EXPECT_TRUE(HoldsWholeBlocks(130, 200, b, 0, 128, 128, 200));
  EXPECT_FALSE(HoldsWholeBlocks(130, 200, b, 64, 130, 0, 200));
  EXPECT_FALSE(HoldsWholeBlocks(130, 200, b, 0, 64, 0, 200));
  EXPECT_FALSE(HoldsWholeBlocks(130, 200, b, 0, 130, 100, 200));
  EXPECT_FALSE(HoldsWholeBlocks(130, 200, b, 0, 130, 0, 129));
  EXPECT_TRUE(HoldsWholeBlocks(512, 512, b, 256, 384, 128, 512));
  // TP = 4 over N = 7168 rows: 1792 = 14 * 128 -> whole; TP = 3 over 768
  // rows: 256 -> whole; TP = 3 over 384 rows: 128 -> whole; TP = 6 over 768:
  // 128 -> whole; TP = 4 over 768: 192 -> not.
  EXPECT_TRUE(HoldsWholeBlocks(7168, 128, b, 1792, 3584, 0, 128));
  EXPECT_TRUE(HoldsWholeBlocks(768, 128, b, 512, 768, 0, 128));
  EXPECT_FALSE(HoldsWholeBlocks(768, 128, b, 192, 384, 0, 128));
  // MXFP8 blocks {1, 32}: any rows; columns on multiples of 32.
  EXPECT_TRUE(HoldsWholeBlocks(5, 96, {1, 32}, 3, 4, 32, 96));
  EXPECT_FALSE(HoldsWholeBlocks(5, 96, {1, 32}, 0, 5, 16, 96));
  // Ranges.
  EXPECT_TRUE(IsWholeBlockRange(130, 128, 128, 128));   // empty
  EXPECT_FALSE(IsWholeBlockRange(130, 128, 0, 131));    // past the end
  EXPECT_FALSE(IsWholeBlockRange(130, 128, 129, 128));  // reversed
  EXPECT_FALSE(IsWholeBlockRange(130, 0, 0, 130));      // bad block
}

// What the rule promises: a slice that holds whole blocks quantises by itself
// to the same bytes and scales as the full tensor, sliced.
TEST(BlockGridTest, WholeBlockSlicesQuantiseLikeTheFullTensor) {
  const int64_t n = 130, k = 200;
  const std::vector<float> x = RandomTensor(n, k, 7);
  const Quantized full = Quantize(x, n, k);
  struct Box {
    int64_t r0, r1, c0, c1;
  };
  for (Box box : {Box{128, 130, 0, 200}, Box{0, 128, 128, 200},
                  Box{0, 130, 128, 200}, Box{0, 128, 0, 128}}) {
    ASSERT_TRUE(HoldsWholeBlocks(n, k, {}, box.r0, box.r1, box.c0, box.c1));
    const int64_t sn = box.r1 - box.r0, sk = box.c1 - box.c0;
    std::vector<float> slice;
    for (int64_t r = box.r0; r < box.r1; ++r) {
      for (int64_t c = box.c0; c < box.c1; ++c) {
        slice.push_back(x[static_cast<size_t>(r * k + c)]);
      }
    }
    const Quantized part = Quantize(slice, sn, sk);
    for (int64_t r = 0; r < sn; ++r) {
      for (int64_t c = 0; c < sk; ++c) {
        ASSERT_EQ(
            part.data[static_cast<size_t>(r * sk + c)],
            full.data[static_cast<size_t>((box.r0 + r) * k + box.c0 + c)]);
      }
    }
    const GridShape g = BlockGrid(sn, sk, {});
    for (int64_t gr = 0; gr < g.rows; ++gr) {
      for (int64_t gc = 0; gc < g.cols; ++gc) {
        EXPECT_EQ(part.scale_inv[static_cast<size_t>(gr * g.cols + gc)],
                  full.scale_inv[static_cast<size_t>((box.r0 / 128 + gr) * 2 +
                                                     box.c0 / 128 + gc)]);
      }
    }
  }
  // Rows [64, 130) straddle block row 0: put the block's amax in rows
  // [0, 64) and the slice's own scale differs from the full tensor's.
  std::vector<float> y = x;
  y[0] = 1000.0f;
  ASSERT_FALSE(HoldsWholeBlocks(n, k, {}, 64, 130, 0, 200));
  const Quantized fy = Quantize(y, n, k);
  const std::vector<float> tail(y.begin() + 64 * k, y.end());
  const Quantized part = Quantize(tail, n - 64, k);
  EXPECT_EQ(fy.scale_inv[0], 1000.0f / 448.0f);
  EXPECT_NE(part.scale_inv[0], fy.scale_inv[0]);
}

TEST(BlockFp8Test, Errors) {
  std::vector<float> x(6, 1.0f);
  std::vector<uint8_t> data(6);
  std::vector<float> scale(1);
  const auto quantize = [&](std::span<const std::byte> in, DType dtype,
                            int64_t n, int64_t k, BlockFp8Options o = {}) {
    return QuantizeBlockFp8(in, dtype, n, k, o, AsWritableBytes(data),
                            AsWritableBytes(scale));
  };
  EXPECT_TRUE(quantize(AsBytes(x), DType::kF32, 2, 3).ok());
  EXPECT_EQ(quantize(AsBytes(x), DType::kF32, 3, 3).code(),
            StatusCode::kInvalidArgument);  // input size
  EXPECT_EQ(quantize(AsBytes(x), DType::kI32, 2, 3).code(),
            StatusCode::kInvalidArgument);  // dtype
  EXPECT_EQ(quantize(AsBytes(x), DType::kF32, -2, -3).code(),
            StatusCode::kInvalidArgument);
  BlockFp8Options bad;
  bad.block = {0, 128};
  EXPECT_EQ(quantize(AsBytes(x), DType::kF32, 2, 3, bad).code(),
            StatusCode::kInvalidArgument);
  bad = {};
  bad.min_amax = -1.0f;
  EXPECT_EQ(quantize(AsBytes(x), DType::kF32, 2, 3, bad).code(),
            StatusCode::kInvalidArgument);
  bad.min_amax = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(quantize(AsBytes(x), DType::kF32, 2, 3, bad).code(),
            StatusCode::kInvalidArgument);
  // Scale span of the wrong size: [2, 3] with 1 x 1 blocks has 6 scales.
  bad = {};
  bad.block = {1, 1};
  Status s = quantize(AsBytes(x), DType::kF32, 2, 3, bad);
  EXPECT_NE(s.message().find("scale_inv has 4 bytes, expected 24"),
            std::string::npos)
      << s.message();
  // Non-finite input names the element.
  x[4] = std::numeric_limits<float>::quiet_NaN();
  s = quantize(AsBytes(x), DType::kF32, 2, 3);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("[1, 1]"), std::string::npos) << s.message();
  x[4] = 1.0f;
  x[2] = -std::numeric_limits<float>::infinity();
  s = quantize(AsBytes(x), DType::kF32, 2, 3);
  EXPECT_NE(s.message().find("[0, 2]"), std::string::npos) << s.message();
  // Dequantisation.
  std::vector<float> out(6);
  EXPECT_EQ(DequantizeBlockFp8(AsBytes(data), AsBytes(scale), 2, 3, {},
                               AsWritableBytes(out), DType::kF8E4M3)
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(DequantizeBlockFp8(AsBytes(data), AsBytes(scale), 3, 3, {},
                               AsWritableBytes(out), DType::kF32)
                .code(),
            StatusCode::kInvalidArgument);
  // Empty tensors are fine.
  EXPECT_TRUE(QuantizeBlockFp8({}, DType::kF32, 0, 5, {}, {}, {}).ok());
}

}  // namespace
}  // namespace refit::quant
