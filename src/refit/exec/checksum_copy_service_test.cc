#include "refit/exec/checksum_copy_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <xxhash.h>

#include <map>
#include <utility>
#include <vector>

namespace refit::exec {
namespace {

using ::testing::HasSubstr;

// One rank that sends to itself: Run gathers each send into the receive of
// the same task, flipping bit `flip_bit` of message `flip_task` on the way.
class Loopback : public CopyService {
 public:
  int rank() const override { return 3; }
  TransportCapabilities capabilities() const override {
    TransportCapabilities caps;
    caps.reads = caps.writes = {MemoryKind::kHost, MemoryKind::kCuda};
    caps.max_message_bytes = 1000;
    return caps;
  }
  Status SubmitSend(int, uint64_t task, std::vector<ConstBlock> b) override {
    sends_[task] = std::move(b);
    return OkStatus();
  }
  Status SubmitRecv(int, uint64_t task, std::vector<MutBlock> b) override {
    recvs_[task] = std::move(b);
    return OkStatus();
  }
  Status Run() override {
    for (auto& [task, to] : recvs_) {
      if (TotalBytes(sends_[task]) != TotalBytes(to)) {
        return FailedPrecondition("size");
      }
      GatherScatter(sends_[task], to);
      if (task == flip_task) FlipBit(to, flip_bit);
    }
    sends_.clear();
    recvs_.clear();
    return OkStatus();
  }
  Status Close() override { return OkStatus(); }

  uint64_t flip_task = UINT64_MAX;
  uint64_t flip_bit = 0;

 private:
  // Flips bit `bit` of the message laid out in `to` (contiguous blocks).
  static void FlipBit(const std::vector<MutBlock>& to, uint64_t bit) {
    uint64_t at = bit / 8;
    for (const MutBlock& b : to) {
      if (at < b.run_bytes) {
        b.base[at] ^= std::byte(1 << (bit % 8));
        return;
      }
      at -= b.run_bytes;
    }
  }

  std::map<uint64_t, std::vector<ConstBlock>> sends_;
  std::map<uint64_t, std::vector<MutBlock>> recvs_;
};

std::vector<std::byte> Bytes(size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte((i * 131 + seed) & 0xFF);
  return v;
}

// Sends `src` to itself as `task` (strided runs of 10 bytes on the receive
// side) and returns Run's status; `dst` gets the bytes.
Status SendToSelf(ChecksumCopyService& s, uint64_t task,
                  const std::vector<std::byte>& src,
                  std::vector<std::byte>& dst) {
  dst.assign(src.size() * 2, std::byte{0});
  EXPECT_TRUE(s.SubmitSend(3, task, {{src.data(), src.size(), 1, 0}}).ok());
  EXPECT_TRUE(
      s.SubmitRecv(3, task, {{dst.data(), 10, src.size() / 10, 20}}).ok());
  return s.Run();
}

TEST(ChecksumCopyService, DeliversAndVerifiesEveryMessage) {
  Loopback inner;
  ChecksumCopyService s(inner, 5);
  const std::vector<std::byte> src = Bytes(200, 1);
  std::vector<std::byte> dst;
  ASSERT_TRUE(SendToSelf(s, 7, src, dst).ok());
  for (size_t i = 0; i < src.size(); ++i) {
    ASSERT_EQ(dst[(i / 10) * 20 + i % 10], src[i]) << i;
  }
  EXPECT_EQ(s.verified(), 1u);
  EXPECT_EQ(s.mismatches(), 0u);
}

TEST(ChecksumCopyService, EveryFlippedBitIsDataLossNamingTaskAndRanks) {
  const std::vector<std::byte> src = Bytes(40, 2);
  // Every bit of the message and of its 16-byte trailer: all detected.
  const uint64_t bits = (40 + kChecksumTrailerBytes) * 8;
  Loopback inner;
  ChecksumCopyService s(inner, 1);
  s.set_describer([](int, int, uint64_t task) {
    return "parameter #" + std::to_string(task);
  });
  for (uint64_t bit = 0; bit < bits; ++bit) {
    inner.flip_task = 9;
    inner.flip_bit = bit;
    std::vector<std::byte> dst(40);
    ASSERT_TRUE(s.SubmitSend(3, 9, {{src.data(), 40, 1, 0}}).ok());
    ASSERT_TRUE(s.SubmitRecv(3, 9, {{dst.data(), 40, 1, 0}}).ok());
    const Status st = s.Run();
    ASSERT_EQ(st.code(), StatusCode::kDataLoss) << bit;
    // A flip in the trailer's epoch reads as a stale message.
    if (bit >= (40 + 8) * 8) continue;
    EXPECT_THAT(st.message(),
                HasSubstr("task 9 from rank 3 to rank 3 (parameter #9): "
                          "checksum mismatch"));
  }
  EXPECT_EQ(s.mismatches(), bits);
  EXPECT_EQ(s.verified(), bits);
}

TEST(ChecksumCopyService, StaleRefitIsNamed) {
  Loopback inner;
  ChecksumCopyService s(inner, 4);
  const std::vector<std::byte> src = Bytes(30, 3);
  std::vector<std::byte> dst(30);
  ASSERT_TRUE(s.SubmitSend(3, 2, {{src.data(), 30, 1, 0}}).ok());
  s.set_epoch(5);
  ASSERT_TRUE(s.SubmitRecv(3, 2, {{dst.data(), 30, 1, 0}}).ok());
  const Status st = s.Run();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_THAT(st.message(),
              HasSubstr("stale message of refit 4, expected refit 5"));
}

TEST(ChecksumCopyService, CountsEveryBadMessageInOneRun) {
  Loopback inner;
  ChecksumCopyService s(inner);
  const std::vector<std::byte> src = Bytes(30, 4);
  std::vector<std::vector<std::byte>> dst(3, std::vector<std::byte>(30));
  for (uint64_t t = 0; t < 3; ++t) {
    ASSERT_TRUE(s.SubmitSend(3, t, {{src.data(), 30, 1, 0}}).ok());
  }
  s.set_epoch(1);  // the receives expect the next refit: all three stale
  for (uint64_t t = 0; t < 3; ++t) {
    ASSERT_TRUE(s.SubmitRecv(3, t, {{dst[t].data(), 30, 1, 0}}).ok());
  }
  const Status st = s.Run();
  EXPECT_THAT(st.message(), HasSubstr("(and 2 more messages to this rank)"));
  EXPECT_EQ(s.mismatches(), 3u);
}

TEST(ChecksumCopyService, DeclaresHostMemoryAndShorterMessages) {
  Loopback inner;
  ChecksumCopyService s(inner);
  const TransportCapabilities caps = s.capabilities();
  EXPECT_TRUE(caps.CanRead(MemoryKind::kHost));
  EXPECT_FALSE(caps.CanRead(MemoryKind::kCuda));
  EXPECT_FALSE(caps.CanWrite(MemoryKind::kCuda));
  EXPECT_EQ(caps.max_message_bytes, 1000 - kChecksumTrailerBytes);
}

TEST(ChecksumCopyService, HashCoversRanksTaskAndEpoch) {
  const std::vector<std::byte> b = Bytes(64, 5);
  const ConstBlock block{b.data(), 64, 1, 0};
  const uint64_t h = MessageChecksum({&block, 1}, 0, 1, 2, 3);
  EXPECT_NE(h, MessageChecksum({&block, 1}, 1, 1, 2, 3));
  EXPECT_NE(h, MessageChecksum({&block, 1}, 0, 0, 2, 3));
  EXPECT_NE(h, MessageChecksum({&block, 1}, 0, 1, 3, 3));
  EXPECT_NE(h, MessageChecksum({&block, 1}, 0, 1, 2, 4));
  // The same bytes in other runs hash alike.
  const ConstBlock halves[2] = {{b.data(), 32, 1, 0}, {b.data() + 32, 8, 4, 8}};
  EXPECT_EQ(h, MessageChecksum(halves, 0, 1, 2, 3));
}

// The service may hash with libxxhash's AVX2 / AVX-512 dispatch: its
// streamed hash equals the plain one-shot XXH3 of the same bytes and seed,
// so ranks of builds with and without the dispatch agree.
TEST(ChecksumCopyService, HashIsPlainXxh3OfTheBytes) {
  const std::vector<std::byte> b = Bytes(100000, 6);
  const ConstBlock blocks[2] = {{b.data(), 1000, 50, 1000},
                                {b.data() + 50000, 50000, 1, 0}};
  const uint64_t key[4] = {2, 5, 77, 9};
  const uint64_t want =
      XXH3_64bits_withSeed(b.data(), b.size(), XXH3_64bits(key, sizeof(key)));
  EXPECT_EQ(MessageChecksum(blocks, 2, 5, 77, 9), want);
}

}  // namespace
}  // namespace refit::exec
