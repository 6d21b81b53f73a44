#include "refit/transport/p2p/p2p_schedule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <utility>
#include <vector>

namespace refit::exec {
namespace {

TEST(PairChunkBytesTest, SmallerBudgetAndMorePeersDecide) {
  EXPECT_EQ(PairChunkBytes({1000, 2}, {4000, 5}), 100u);  // 1000 / (2 * 5)
  EXPECT_EQ(PairChunkBytes({4000, 5}, {1000, 2}), 100u);
  EXPECT_EQ(PairChunkBytes({3, 4}, {3, 4}), 1u);  // never 0
  EXPECT_EQ(PairChunkBytes({64, 0}, {64, 0}), 32u);
}

TEST(StreamChunksTest, EachMessageCutOnItsOwn) {
  const std::vector<WireMessage> messages = {
      {7, 250}, {8, 0}, {9, 100}, {12, 1}};
  const std::vector<WireChunk> chunks = StreamChunks(messages, 100);
  const std::vector<std::pair<uint32_t, uint64_t>> want = {
      {0, 100}, {0, 100}, {0, 50}, {2, 100}, {3, 1}};
  ASSERT_EQ(chunks.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(chunks[i].message, want[i].first) << i;
    EXPECT_EQ(chunks[i].bytes, want[i].second) << i;
  }
}

// Random worlds: every rank sends random messages to random peers. With
// every chunk staged, no rank's round holds more than its bound; each
// message's chunks cover its bytes exactly; both sides of a stream cut it
// alike from what they know.
TEST(P2pScheduleProperty, RoundsStayWithinEveryRanksBound) {
  std::mt19937_64 rng(12);
  for (int trial = 0; trial < 300; ++trial) {
    const int world = 1 + static_cast<int>(rng() % 9);
    std::map<std::pair<int, int>, std::vector<WireMessage>> streams;
    for (int src = 0; src < world; ++src) {
      for (int dst = 0; dst < world; ++dst) {
        if (rng() % 3 == 0) continue;
        const int count = static_cast<int>(rng() % 4);
        for (int m = 0; m < count; ++m) {
          streams[{src, dst}].push_back({uint64_t(m), rng() % 5000});
        }
      }
    }
    std::vector<std::set<int>> peers(world);
    for (const auto& [pair, list] : streams) {
      peers[pair.first].insert(pair.second);
      peers[pair.second].insert(pair.first);
    }
    std::vector<P2pBudget> budget(world);
    for (int r = 0; r < world; ++r) {
      budget[r] = {64 + rng() % 4096, peers[r].size()};
    }
    std::map<std::pair<int, int>, std::vector<WireChunk>> chunks;
    size_t rounds = 0;
    for (const auto& [pair, list] : streams) {
      const uint64_t c =
          PairChunkBytes(budget[pair.first], budget[pair.second]);
      ASSERT_EQ(c, PairChunkBytes(budget[pair.second], budget[pair.first]));
      chunks[pair] = StreamChunks(list, c);
      std::vector<uint64_t> covered(list.size());
      for (const WireChunk& ch : chunks[pair]) {
        ASSERT_LE(ch.bytes, c);
        covered[ch.message] += ch.bytes;
      }
      for (size_t m = 0; m < list.size(); ++m) {
        ASSERT_EQ(covered[m], list[m].bytes);
      }
      rounds = std::max(rounds, chunks[pair].size());
    }
    for (size_t r = 0; r < rounds; ++r) {
      std::vector<uint64_t> staged(world);
      for (const auto& [pair, list] : chunks) {
        if (r >= list.size()) continue;
        staged[pair.first] += list[r].bytes;
        staged[pair.second] += list[r].bytes;
      }
      for (int k = 0; k < world; ++k) {
        ASSERT_LE(staged[k], budget[k].staging_bytes)
            << "trial " << trial << " round " << r << " rank " << k;
      }
    }
  }
}

}  // namespace
}  // namespace refit::exec
