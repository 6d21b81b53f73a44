// The p2p copy service over the thread backend, through a counting backend:
// what each stage sends, the staging it holds, mismatches and timeouts. The
// conformance suite (transport.p2p*) checks bytes in every shape.
#include "refit/transport/p2p/p2p_copy_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "refit/transport/p2p/thread_p2p_backend.h"

namespace refit::exec {
namespace {

using ::testing::HasSubstr;

// Counts a backend's exchanges and the bytes it allocates.
struct Counts {
  std::atomic<int> exchanges{0};
  std::atomic<uint64_t> allocated{0};
};

class CountingBackend final : public P2pBackend {
 public:
  CountingBackend(std::unique_ptr<P2pBackend> inner, Counts* counts)
      : inner_(std::move(inner)), counts_(counts) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::vector<MemoryKind> kinds() const override { return inner_->kinds(); }
  bool Exchangeable(const void* p) const override {
    return inner_->Exchangeable(p);
  }
  Result<std::byte*> Allocate(uint64_t bytes) override {
    counts_->allocated += bytes;
    return inner_->Allocate(bytes);
  }
  void Free(std::byte* p) override { inner_->Free(p); }
  Status Copy(std::span<const ConstBlock> from,
              std::span<const MutBlock> to) override {
    return inner_->Copy(from, to);
  }
  Status Exchange(std::span<const P2pSend> sends,
                  std::span<const P2pRecv> recvs) override {
    ++counts_->exchanges;
    return inner_->Exchange(sends, recvs);
  }
  Status Wait() override { return inner_->Wait(); }

 private:
  std::unique_ptr<P2pBackend> inner_;
  Counts* counts_;
};

// Runs body(rank, service) on `world` rank threads; returns their statuses.
std::vector<Status> OnRanks(
    int world, ThreadP2pOptions backend, P2pCopyOptions service,
    std::vector<Counts>& counts,
    const std::function<Status(int, CopyService&)>& body) {
  ThreadP2pFabric fabric(world, backend);
  std::vector<Status> statuses(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      auto svc = MakeP2pCopyService(
          std::make_unique<CountingBackend>(fabric.Connect(r), &counts[r]),
          service);
      statuses[r] = body(r, *svc);
    });
  }
  for (auto& t : threads) t.join();
  return statuses;
}

std::vector<std::byte> Bytes(size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(i * 7 + seed);
  return v;
}

// Rank 0 sends rank 1 one strided message 3 times. The first Run swaps
// headers, lists and data (3 exchanges on each side); the next ones skip the
// lists (2). Each round stages at most the bound: 1 KiB.
TEST(P2pCopyServiceTest, UnchangedListsAreNotSentAgain) {
  std::vector<Counts> counts(2);
  P2pCopyOptions options;
  options.max_staging_bytes = 1024;
  const auto src = Bytes(20000, 3);
  std::vector<std::vector<std::byte>> got(3);
  const auto statuses = OnRanks(
      2, {std::chrono::seconds(10), false}, options, counts,
      [&](int rank, CopyService& svc) -> Status {
        for (int run = 0; run < 3; ++run) {
          const int before = counts[rank].exchanges;
          if (rank == 0) {
            REFIT_RETURN_IF_ERROR(
                svc.SubmitSend(1, 4, {{src.data(), 100, 100, 200}}));
          } else {
            got[run].assign(10000, std::byte{0});
            REFIT_RETURN_IF_ERROR(
                svc.SubmitRecv(0, 4, {{got[run].data(), 10000, 1, 10000}}));
          }
          REFIT_RETURN_IF_ERROR(svc.Run());
          // 10000 bytes in chunks of 1024 / (2 * 1) = 512: 20 data rounds.
          const int want = (run == 0 ? 2 : 1) + 20;
          if (counts[rank].exchanges - before != want) {
            return Internal("run " + std::to_string(run) + ": " +
                            std::to_string(counts[rank].exchanges - before) +
                            " exchanges");
          }
        }
        return OkStatus();
      });
  for (const Status& st : statuses) EXPECT_TRUE(st.ok()) << st.ToString();
  for (int run = 0; run < 3; ++run) {
    for (size_t i = 0; i < 10000; ++i) {
      ASSERT_EQ(got[run][i], src[(i / 100) * 200 + i % 100]) << run << " " << i;
    }
  }
  // Staging: the lists and headers (meta) plus at most 1 KiB of arena.
  EXPECT_LE(counts[0].allocated.load(), 1024u + 64u);
  EXPECT_LE(counts[1].allocated.load(), 1024u + 64u);
}

// A contiguous chunk of memory the backend exchanges goes in place: no
// arena.
TEST(P2pCopyServiceTest, ContiguousChunksNeedNoStaging) {
  std::vector<Counts> counts(2);
  const auto src = Bytes(5000, 1);
  std::vector<std::byte> dst(5000);
  const auto statuses =
      OnRanks(2, {}, {}, counts, [&](int rank, CopyService& svc) {
        if (rank == 0) {
          REFIT_RETURN_IF_ERROR(
              svc.SubmitSend(1, 9, {{src.data(), 5000, 1, 0}}));
        } else {
          REFIT_RETURN_IF_ERROR(
              svc.SubmitRecv(0, 9, {{dst.data(), 5000, 1, 0}}));
        }
        return svc.Run();
      });
  for (const Status& st : statuses) EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(dst, src);
  // Only the metadata buffer: the headers (32 bytes each way), reused for
  // the 16-byte list.
  EXPECT_EQ(counts[0].allocated.load(), 64u);
  EXPECT_EQ(counts[1].allocated.load(), 64u);
}

// Rank 1 expects task 3, rank 0 sends task 2: the sender completes, the
// receiver names both and its buffer stays as it was.
TEST(P2pCopyServiceTest, TaskOnlyOneSideSubmittedFailsTheReceiver) {
  std::vector<Counts> counts(2);
  const auto src = Bytes(64, 1);
  std::vector<std::byte> dst(64, std::byte{0x5A});
  const auto statuses =
      OnRanks(2, {}, {}, counts, [&](int rank, CopyService& svc) {
        if (rank == 0) {
          REFIT_RETURN_IF_ERROR(svc.SubmitSend(1, 2, {{src.data(), 64, 1, 0}}));
        } else {
          REFIT_RETURN_IF_ERROR(svc.SubmitRecv(0, 3, {{dst.data(), 64, 1, 0}}));
        }
        return svc.Run();
      });
  EXPECT_TRUE(statuses[0].ok()) << statuses[0].ToString();
  EXPECT_EQ(statuses[1].code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(statuses[1].message(),
              HasSubstr("rank 1 received task 2 from rank 0 (64 bytes), which "
                        "it did not expect"));
  EXPECT_EQ(dst, std::vector<std::byte>(64, std::byte{0x5A}));
}

// A task submitted twice for one peer and direction, a peer out of range.
TEST(P2pCopyServiceTest, BadSubmissionsAreRefused) {
  std::vector<Counts> counts(1);
  std::byte b{};
  const auto statuses =
      OnRanks(1, {}, {}, counts, [&](int, CopyService& svc) -> Status {
        EXPECT_TRUE(svc.SubmitSend(0, 1, {{&b, 1, 1, 0}}).ok());
        const Status twice = svc.SubmitSend(0, 1, {{&b, 1, 1, 0}});
        EXPECT_EQ(twice.code(), StatusCode::kInvalidArgument);
        EXPECT_THAT(twice.message(), HasSubstr("task 1 send to rank 0"));
        const Status far = svc.SubmitRecv(3, 1, {{&b, 1, 1, 0}});
        EXPECT_EQ(far.code(), StatusCode::kInvalidArgument);
        EXPECT_THAT(far.message(), HasSubstr("rank 3 of a world of 1"));
        return OkStatus();
      });
  EXPECT_TRUE(statuses[0].ok());
}

// After a timeout the endpoint refuses further work, saying why.
TEST(P2pCopyServiceTest, UnusableAfterATimeout) {
  std::vector<Counts> counts(2);
  P2pCopyOptions options;
  options.name = "nccl copy service";
  options.timeout = std::chrono::milliseconds(100);
  std::vector<std::byte> buf(8);
  const auto statuses = OnRanks(
      2, {std::chrono::milliseconds(100)}, options, counts,
      [&](int rank, CopyService& svc) -> Status {
        if (rank == 1) return OkStatus();
        REFIT_RETURN_IF_ERROR(svc.SubmitSend(1, 6, {{buf.data(), 8, 1, 0}}));
        const Status first = svc.Run();
        EXPECT_EQ(first.code(), StatusCode::kDeadlineExceeded);
        EXPECT_THAT(first.message(),
                    HasSubstr("nccl copy service: rank 0 waited 0.1 s for "
                              "task 6 to rank 1 (its message list"));
        const Status again = svc.Run();
        EXPECT_EQ(again.code(), StatusCode::kFailedPrecondition);
        EXPECT_THAT(again.message(), HasSubstr("unusable after a failed Run"));
        return OkStatus();
      });
  EXPECT_TRUE(statuses[0].ok());
}

}  // namespace
}  // namespace refit::exec
