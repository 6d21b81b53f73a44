#include "refit/exec/copy_service.h"

#include <gtest/gtest.h>

#include <cstring>

#include "refit/exec/stream_copy.h"

namespace refit::exec {
namespace {

std::vector<std::byte> Iota(size_t n) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>(i * 7 + 3);
  return v;
}

// 3 runs of 4 bytes (stride 10) into 2 runs of 6 bytes (stride 8).
TEST(GatherScatterTest, DifferentRunStructures) {
  const std::vector<std::byte> src = Iota(30);
  std::vector<std::byte> dst(16, std::byte{0xEE});
  const ConstBlock from[] = {{src.data() + 1, 4, 3, 10}};
  const MutBlock to[] = {{dst.data(), 6, 2, 8}};
  ASSERT_EQ(TotalBytes(from), 12u);
  ASSERT_EQ(TotalBytes(to), 12u);
  GatherScatter(from, to);
  const size_t want_src[] = {1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24};
  const size_t at_dst[] = {0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13};
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(dst[at_dst[i]], src[want_src[i]]);
  EXPECT_EQ(dst[6], std::byte{0xEE});
  EXPECT_EQ(dst[7], std::byte{0xEE});
  EXPECT_EQ(dst[14], std::byte{0xEE});
}

TEST(GatherScatterTest, EmptyBlocksAreSkipped) {
  const std::vector<std::byte> src = Iota(8);
  std::vector<std::byte> dst(8);
  const ConstBlock from[] = {{src.data(), 0, 5, 0}, {src.data(), 8, 1, 8}};
  const MutBlock to[] = {{dst.data(), 4, 2, 4}, {dst.data(), 3, 0, 3}};
  GatherScatter(from, to);
  EXPECT_EQ(dst, src);
}

// Sizes around the streaming threshold and odd alignments stay exact.
TEST(StreamCopyTest, ExactForAllAlignments) {
  const std::vector<std::byte> src = Iota(kStreamCopyMinBytes + 300);
  for (size_t off : {0, 1, 7, 15, 16, 33}) {
    for (size_t n : {0ul, 5ul, 64ul, 129ul, kStreamCopyMinBytes + 77}) {
      std::vector<std::byte> dst(n + 64, std::byte{0});
      StreamCopy(dst.data() + off, src.data() + 3, n);
      StreamCopyFence();
      EXPECT_EQ(0, std::memcmp(dst.data() + off, src.data() + 3, n))
          << off << " " << n;
      for (size_t i = 0; i < off; ++i) EXPECT_EQ(dst[i], std::byte{0});
    }
  }
}

}  // namespace
}  // namespace refit::exec
