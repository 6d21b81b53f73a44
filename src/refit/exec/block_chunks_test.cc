#include "refit/exec/block_chunks.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace refit::exec {
namespace {

// The bytes a block list describes, in order.
std::vector<std::byte> Bytes(std::span<const ConstBlock> blocks) {
  std::vector<std::byte> out(TotalBytes(blocks));
  const MutBlock all{out.data(), out.size(), 1, out.size()};
  GatherScatter(blocks, {&all, 1});
  return out;
}

class SplitBlocksTest : public ::testing::Test {
 protected:
  SplitBlocksTest() : data_(4096) {
    for (size_t i = 0; i < data_.size(); ++i) {
      data_[i] = static_cast<std::byte>(i * 7 + i / 251);
    }
  }
  const std::byte* at(size_t offset) const { return data_.data() + offset; }
  std::vector<std::byte> data_;
};

TEST_F(SplitBlocksTest, ChunksConcatenateToTheMessage) {
  // A strided block (runs of 24 every 40), a contiguous one, a single run.
  const std::vector<ConstBlock> blocks = {
      {at(0), 24, 10, 40}, {at(1000), 300, 1, 300}, {at(2000), 7, 3, 7}};
  const std::vector<std::byte> whole = Bytes(blocks);
  for (uint64_t chunk : {1, 5, 24, 25, 64, 100, 560, 10000}) {
    const auto chunks = SplitBlocks(blocks, chunk);
    std::vector<std::byte> joined;
    for (size_t c = 0; c < chunks.size(); ++c) {
      const std::vector<std::byte> part = Bytes(chunks[c]);
      if (c + 1 < chunks.size()) {
        EXPECT_EQ(part.size(), chunk) << chunk;
      }
      EXPECT_LE(part.size(), chunk);
      EXPECT_GT(part.size(), 0u);
      joined.insert(joined.end(), part.begin(), part.end());
    }
    EXPECT_EQ(chunks.size(), (whole.size() + chunk - 1) / chunk) << chunk;
    EXPECT_EQ(joined, whole) << chunk;
  }
}

TEST_F(SplitBlocksTest, SameChunkSizesWhateverTheBlockStructure) {
  const std::vector<ConstBlock> strided = {{at(0), 10, 20, 16}};
  const std::vector<ConstBlock> flat = {{at(0), 200, 1, 200}};
  const auto a = SplitBlocks(strided, 64);
  const auto b = SplitBlocks(flat, 64);
  ASSERT_EQ(a.size(), b.size());
  for (size_t c = 0; c < a.size(); ++c) {
    EXPECT_EQ(TotalBytes(a[c]), TotalBytes(b[c]));
  }
}

TEST_F(SplitBlocksTest, EmptyMessageIsOneEmptyChunk) {
  const std::vector<ConstBlock> none = {{at(0), 0, 5, 0}};
  const auto chunks = SplitBlocks(none, 64);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(TotalBytes(chunks[0]), 0u);
}

TEST(ContiguousBaseTest, FindsOneRegion) {
  std::vector<std::byte> buf(1000);
  std::byte* b = buf.data();
  const std::vector<MutBlock> packed_runs = {{b, 8, 4, 8}, {b + 32, 100, 1, 0}};
  EXPECT_EQ(ContiguousBase(packed_runs), b);
  const std::vector<MutBlock> gap = {{b, 8, 1, 8}, {b + 9, 8, 1, 8}};
  EXPECT_EQ(ContiguousBase(gap), nullptr);
  const std::vector<MutBlock> strided = {{b, 8, 2, 16}};
  EXPECT_EQ(ContiguousBase(strided), nullptr);
  const std::vector<MutBlock> empty;
  EXPECT_EQ(ContiguousBase(empty), nullptr);
}

TEST(ContiguousBaseTest, ChunksOfAStridedBlockAreContiguousWithinARun) {
  std::vector<std::byte> buf(4096);
  const std::vector<ConstBlock> rows = {{buf.data(), 1024, 2, 2048}};
  const auto chunks = SplitBlocks(rows, 256);
  ASSERT_EQ(chunks.size(), 8u);
  for (size_t c = 0; c < chunks.size(); ++c) {
    EXPECT_EQ(ContiguousBase(chunks[c]),
              buf.data() + (c / 4) * 2048 + (c % 4) * 256);
  }
}

TEST(SegmentLengthsTest, MergesRunsThatFollowEachOtherInMemory) {
  std::vector<std::byte> buf(1000);
  std::byte* b = buf.data();
  // Runs of 8 every 8 (one region), then a block right after it, a gap, and
  // a strided block (one segment per run); empty runs are skipped.
  const std::vector<MutBlock> blocks = {{b, 8, 4, 8},
                                        {b + 32, 100, 1, 100},
                                        {b + 500, 0, 3, 0},
                                        {b + 200, 10, 3, 20}};
  EXPECT_EQ(SegmentLengths(blocks), (std::vector<uint64_t>{132, 10, 10, 10}));
  const std::vector<ConstBlock> none;
  EXPECT_TRUE(SegmentLengths(none).empty());
}

TEST(PairChunkSizesTest, LargePiecesAloneSmallOnesGrouped) {
  // Cuts at 30, 40, 100, 130, 1130, 1140 (both sides' ends): pieces 30, 10,
  // 60, 30, 1000, 10.
  const std::vector<uint64_t> a = {40, 90, 1010};
  const std::vector<uint64_t> b = {30, 70, 1030, 10};
  // Pieces >= 50 alone (the 1000 one cut at 400); the rest grouped.
  EXPECT_EQ(PairChunkSizes(a, b, 400, 50),
            (std::vector<uint64_t>{40, 60, 30, 400, 400, 200, 10}));
  // Symmetric: the same whichever side computes it.
  EXPECT_EQ(PairChunkSizes(b, a, 400, 50), PairChunkSizes(a, b, 400, 50));
  // Nothing large: groups of at most chunk_bytes, pieces cut across them.
  EXPECT_EQ(PairChunkSizes(a, b, 400, 1 << 20),
            (std::vector<uint64_t>{400, 400, 340}));
  EXPECT_TRUE(PairChunkSizes({}, {}, 400, 50).empty());
  // Which chunks are in place: the same on both sides.
  std::vector<uint8_t> direct_a, direct_b;
  PairChunkSizes(a, b, 400, 50, &direct_a);
  PairChunkSizes(b, a, 400, 50, &direct_b);
  EXPECT_EQ(direct_a, (std::vector<uint8_t>{0, 1, 0, 1, 1, 1, 0}));
  EXPECT_EQ(direct_b, direct_a);
}

TEST_F(SplitBlocksTest, CutBlocksGivesChunksOfTheSizes) {
  const std::vector<ConstBlock> blocks = {{at(0), 24, 10, 40},
                                          {at(1000), 300, 1, 300}};
  const std::vector<std::byte> whole = Bytes(blocks);
  const std::vector<uint64_t> sizes = {5, 24, 100, 1, 300, 110};
  const auto chunks = CutBlocks(blocks, sizes);
  ASSERT_EQ(chunks.size(), sizes.size());
  std::vector<std::byte> joined;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const std::vector<std::byte> part = Bytes(chunks[c]);
    EXPECT_EQ(part.size(), sizes[c]) << c;
    joined.insert(joined.end(), part.begin(), part.end());
  }
  EXPECT_EQ(joined, whole);
  // Chunk 4 spans strided runs and the second block: not in place.
  EXPECT_EQ(ContiguousBase(chunks[4]), nullptr);
  EXPECT_EQ(ContiguousBase(CutBlocks(blocks, {{240, 300}})[1]), at(1000));
}

}  // namespace
}  // namespace refit::exec
