// PlanCopies2D against GatherScatter: random block lists of equal totals,
// the planned 2-D copies run row by row on the host, byte for byte.
#include "refit/exec/copy_2d.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace refit::exec {
namespace {

// Blocks of `total` bytes in `buf` (strided runs with gaps), randomly cut.
template <typename Block, typename Byte>
std::vector<Block> RandomBlocks(Byte* buf, uint64_t total, std::mt19937& rng) {
  std::vector<Block> blocks;
  uint64_t at = 0, left = total;
  while (left > 0) {
    const uint64_t run = 1 + rng() % 24;
    uint64_t nruns = 1 + rng() % 5;
    while (run * nruns > left && nruns > 1) --nruns;
    const uint64_t r = std::min(run, left);
    const uint64_t stride = r + rng() % 8;
    if (rng() % 4 == 0) blocks.push_back({buf + at, 0, 1, 0});  // empty
    blocks.push_back({buf + at, r, nruns, stride});
    at += stride * nruns + 3;
    left -= r * nruns;
  }
  return blocks;
}

TEST(Copy2DTest, MovesWhatGatherScatterMoves) {
  std::mt19937 rng(17);
  for (int trial = 0; trial < 500; ++trial) {
    const uint64_t total = 1 + rng() % 400;
    std::vector<std::byte> src(total * 40), want(total * 40), got(total * 40);
    for (auto& b : src) b = static_cast<std::byte>(rng());
    const auto from = RandomBlocks<ConstBlock>(src.data(), total, rng);
    const auto to_want = RandomBlocks<MutBlock>(want.data(), total, rng);
    std::vector<MutBlock> to_got = to_want;
    for (MutBlock& b : to_got) b.base = got.data() + (b.base - want.data());
    GatherScatter(from, to_want);
    for (const Copy2D& c : PlanCopies2D(from, to_got)) {
      ASSERT_GE(c.src_pitch, c.width);
      ASSERT_GE(c.dst_pitch, c.width);
      for (uint64_t row = 0; row < c.height; ++row) {
        std::memcpy(c.dst + row * c.dst_pitch, c.src + row * c.src_pitch,
                    c.width);
      }
    }
    ASSERT_EQ(got, want) << "trial " << trial;
  }
}

TEST(Copy2DTest, AlignedRunsAreOneCopy) {
  std::vector<std::byte> a(1000), b(1000);
  const ConstBlock f{a.data(), 16, 10, 40};
  const MutBlock t{b.data(), 16, 10, 24};
  const auto copies = PlanCopies2D({&f, 1}, {&t, 1});
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].height, 10u);
  EXPECT_EQ(copies[0].width, 16u);
  EXPECT_EQ(copies[0].src_pitch, 40u);
  EXPECT_EQ(copies[0].dst_pitch, 24u);
}

// Strided rows packed into a flat staging buffer and unpacked back out of
// it: one 2-D copy each way, not one per row.
TEST(Copy2DTest, PackAndUnpackThroughAFlatBufferAreOneCopyEach) {
  std::vector<std::byte> a(4000), staging(1000), b(4000);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<std::byte>(i * 7);
  const ConstBlock strided{a.data() + 8, 100, 6, 300};
  const MutBlock flat{staging.data(), 600, 1, 600};
  const auto pack = PlanCopies2D({&strided, 1}, {&flat, 1});
  ASSERT_EQ(pack.size(), 1u);
  EXPECT_EQ(pack[0].height, 6u);
  EXPECT_EQ(pack[0].width, 100u);
  EXPECT_EQ(pack[0].src_pitch, 300u);
  EXPECT_EQ(pack[0].dst_pitch, 100u);
  const ConstBlock from_flat{staging.data(), 600, 1, 600};
  const MutBlock out{b.data() + 5, 100, 6, 250};
  const auto unpack = PlanCopies2D({&from_flat, 1}, {&out, 1});
  ASSERT_EQ(unpack.size(), 1u);
  EXPECT_EQ(unpack[0].height, 6u);
  EXPECT_EQ(unpack[0].src_pitch, 100u);
  EXPECT_EQ(unpack[0].dst_pitch, 250u);
}

}  // namespace
}  // namespace refit::exec
