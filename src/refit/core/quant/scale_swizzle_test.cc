#include "refit/core/quant/scale_swizzle.h"

#include <gtest/gtest.h>

#include <vector>

#include "refit/core/quant/test_bytes.h"

namespace refit::quant {
namespace {

using testing::AsBytes;
using testing::AsWritableBytes;

// A [rows, cols] scale matrix with varied, non-zero bytes.
std::vector<uint8_t> Scales(int64_t rows, int64_t cols) {
  std::vector<uint8_t> s(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      s[static_cast<size_t>(r * cols + c)] =
          static_cast<uint8_t>(1 + (r * 7 + c * 13) % 254);
    }
  }
  return s;
}

TEST(Swizzle128x4Test, Sizes) {
  EXPECT_EQ(Swizzled128x4Bytes(256, 256), 65536);
  EXPECT_EQ(Swizzled128x4Bytes(130, 5), 256 * 8);
  EXPECT_EQ(Swizzled128x4Bytes(1, 1), 512);
  EXPECT_EQ(Swizzled128x4Bytes(0, 0), 0);
}

// Spot checks for a [256, 256] scale tensor (M = 256, K = 8192): 2 x 64
// tiles of 512 bytes.
TEST(Swizzle128x4Test, OffsetsOf256x256) {
  const int64_t cols = 256;
  EXPECT_EQ(Swizzled128x4Offset(0, 0, cols), 0);
  EXPECT_EQ(Swizzled128x4Offset(0, 1, cols), 1);
  EXPECT_EQ(Swizzled128x4Offset(0, 3, cols), 3);
  EXPECT_EQ(Swizzled128x4Offset(1, 0, cols), 16);
  EXPECT_EQ(Swizzled128x4Offset(32, 0, cols), 4);  // rows r, r+32, r+64,
  EXPECT_EQ(Swizzled128x4Offset(64, 0, cols), 8);  // r+96 sit side by side
  EXPECT_EQ(Swizzled128x4Offset(96, 0, cols), 12);
  EXPECT_EQ(Swizzled128x4Offset(31, 3, cols), 499);   // 31 * 16 + 3
  EXPECT_EQ(Swizzled128x4Offset(127, 3, cols), 511);  // last byte of tile 0
  EXPECT_EQ(Swizzled128x4Offset(0, 4, cols), 512);    // tile 1
  EXPECT_EQ(Swizzled128x4Offset(5, 6, cols), 512 + 80 + 2);
  EXPECT_EQ(Swizzled128x4Offset(128, 0, cols), 64 * 512);  // tile 64
  EXPECT_EQ(Swizzled128x4Offset(130, 5, cols), 65 * 512 + 2 * 16 + 1);
  EXPECT_EQ(Swizzled128x4Offset(200, 9, cols),
            (64 + 2) * 512 + 8 * 16 + 2 * 4 + 1);
  EXPECT_EQ(Swizzled128x4Offset(255, 255, cols), 65535);
}

TEST(Swizzle128x4Test, FullTilesArePermutedNotPadded) {
  const int64_t rows = 256, cols = 256;
  const std::vector<uint8_t> in = Scales(rows, cols);
  std::vector<uint8_t> sw(static_cast<size_t>(Swizzled128x4Bytes(rows, cols)));
  ASSERT_TRUE(Swizzle128x4(AsBytes(in), rows, cols, AsWritableBytes(sw)).ok());
  std::vector<int> hits(sw.size(), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      // Megatron's docstring form of the same formula.
      const int64_t macro_row_block = r / 128, macro_col_block = c / 4;
      const int64_t local_row = r % 128, local_col = c % 4;
      const int64_t group = local_row / 32, sub_row = local_row % 32;
      const int64_t tile_idx =
          macro_row_block * ((cols + 3) / 4) + macro_col_block;
      const int64_t off = tile_idx * 512 + sub_row * 16 + group * 4 + local_col;
      ASSERT_EQ(Swizzled128x4Offset(r, c, cols), off);
      ASSERT_EQ(sw[static_cast<size_t>(off)],
                in[static_cast<size_t>(r * cols + c)]);
      ++hits[static_cast<size_t>(off)];
    }
  }
  for (int h : hits) ASSERT_EQ(h, 1);
  std::vector<uint8_t> back(in.size());
  ASSERT_TRUE(
      Unswizzle128x4(AsBytes(sw), rows, cols, AsWritableBytes(back)).ok());
  EXPECT_EQ(back, in);
}

TEST(Swizzle128x4Test, PartialTilesArePaddedWithZeros) {
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{130, 5}, {1, 1}, {127, 4}, {300, 7}}) {
    const std::vector<uint8_t> in = Scales(rows, cols);
    std::vector<uint8_t> sw(static_cast<size_t>(Swizzled128x4Bytes(rows, cols)),
                            0xEE);
    ASSERT_TRUE(
        Swizzle128x4(AsBytes(in), rows, cols, AsWritableBytes(sw)).ok());
    size_t nonzero = 0;
    for (uint8_t b : sw) nonzero += b != 0;
    EXPECT_EQ(nonzero, in.size()) << rows << "x" << cols;  // padding is 0
    std::vector<uint8_t> back(in.size());
    ASSERT_TRUE(
        Unswizzle128x4(AsBytes(sw), rows, cols, AsWritableBytes(back)).ok());
    EXPECT_EQ(back, in) << rows << "x" << cols;
  }
}

TEST(Swizzle128x4Test, Errors) {
  std::vector<uint8_t> in(10), sw(512), back(10);
  // [2, 5] pads to 128 x 8 = 1024 bytes, not 512.
  EXPECT_FALSE(Swizzle128x4(AsBytes(in), 2, 5, AsWritableBytes(sw)).ok());
  sw.resize(1024);
  EXPECT_TRUE(Swizzle128x4(AsBytes(in), 2, 5, AsWritableBytes(sw)).ok());
  const Status s = Swizzle128x4(AsBytes(in), 3, 5, AsWritableBytes(sw));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("[3, 5]"), std::string::npos) << s.message();
  EXPECT_EQ(Unswizzle128x4(AsBytes(sw), 2, 5, AsWritableBytes(in)).code(),
            StatusCode::kOk);
  EXPECT_EQ(Unswizzle128x4(AsBytes(sw), -1, 5, AsWritableBytes(in)).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace refit::quant
