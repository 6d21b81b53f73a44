// The CUDA IPC copy service with ranks as threads: the embedded copy service
// carries the control messages, ThreadIpcMemory stands in for device memory,
// and counting wrappers of both show what a Run exchanges.
#include "refit/transport/cuda_ipc/cuda_ipc_copy_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <thread>

#include "refit/exec/block_mover.h"
#include "refit/transport/cuda_ipc/ipc_manifest.h"
#include "refit/transport/cuda_ipc/ipc_mappings.h"
#include "refit/transport/cuda_ipc/thread_ipc_memory.h"
#include "refit/transport/embedded/embedded_copy_service.h"

namespace refit::exec {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uint64_t kHeaderBytes = ipc::kHeaderWords * sizeof(uint64_t);

// What one rank's endpoint did.
struct Counts {
  std::atomic<int> exports{0}, opens{0}, closes{0};
  std::atomic<uint64_t> control_bytes_sent{0};
  bool refuse_exports = false;
};

class CountingMemory final : public IpcMemory {
 public:
  explicit CountingMemory(Counts* counts) : counts_(counts) {}
  ThreadIpcMemory& inner() { return inner_; }
  std::vector<MemoryKind> kinds() const override { return inner_.kinds(); }
  Result<IpcExport> Export(const std::byte* ptr) override {
    ++counts_->exports;
    if (counts_->refuse_exports) return InvalidArgument("no exports here");
    return inner_.Export(ptr);
  }
  uint64_t AllocationId(const std::byte* ptr) override {
    return inner_.AllocationId(ptr);
  }
  Result<std::byte*> Open(const IpcHandle& handle) override {
    ++counts_->opens;
    return inner_.Open(handle);
  }
  Status CloseMapping(std::byte* base) override {
    ++counts_->closes;
    return inner_.CloseMapping(base);
  }
  Status Move(std::span<const ConstBlock> from,
              std::span<const MutBlock> to) override {
    return inner_.Move(from, to);
  }

 private:
  ThreadIpcMemory inner_;
  Counts* counts_;
};

class CountingControl final : public CopyService {
 public:
  CountingControl(std::unique_ptr<CopyService> inner, Counts* counts)
      : inner_(std::move(inner)), counts_(counts) {}
  int rank() const override { return inner_->rank(); }
  TransportCapabilities capabilities() const override {
    return inner_->capabilities();
  }
  Status SubmitSend(int dst, uint64_t task,
                    std::vector<ConstBlock> blocks) override {
    counts_->control_bytes_sent += TotalBytes(blocks);
    return inner_->SubmitSend(dst, task, std::move(blocks));
  }
  Status SubmitRecv(int src, uint64_t task,
                    std::vector<MutBlock> blocks) override {
    return inner_->SubmitRecv(src, task, std::move(blocks));
  }
  Status Run() override { return inner_->Run(); }
  Status Close() override { return inner_->Close(); }

 private:
  std::unique_ptr<CopyService> inner_;
  Counts* counts_;
};

struct Endpoint {
  int rank = 0;
  CopyService* service = nullptr;
  Counts* counts = nullptr;
  ThreadIpcMemory* memory = nullptr;  // to declare allocations
};

// Runs `body` on `world` rank threads, each with its own endpoint; returns
// every rank's Status.
std::vector<Status> OnRanks(
    int world, const std::function<Status(Endpoint&)>& body,
    std::vector<Counts>* counts = nullptr,
    std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  EmbeddedFabric fabric(world, timeout);
  std::vector<Counts> local(world);
  std::vector<Counts>& c = counts != nullptr ? *counts : local;
  if (counts != nullptr && counts->size() != static_cast<size_t>(world)) {
    ADD_FAILURE() << "counts for " << counts->size() << " ranks";
    return {};
  }
  std::vector<Status> statuses(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      auto memory = std::make_unique<CountingMemory>(&c[r]);
      Endpoint e{r, nullptr, &c[r], &memory->inner()};
      Result<std::unique_ptr<CopyService>> service = ConnectCudaIpcCopyService(
          std::make_unique<CountingControl>(fabric.Connect(r), &c[r]),
          std::move(memory));
      if (!service.ok()) {
        statuses[r] = service.status();
        return;
      }
      e.service = service->get();
      statuses[r] = body(e);
      Status closed = (*service)->Close();
      if (statuses[r].ok()) statuses[r] = closed;
    });
  }
  for (std::thread& t : threads) t.join();
  return statuses;
}

std::byte Byte(int src, uint64_t task, uint64_t i, int round) {
  return static_cast<std::byte>(src * 31 + task * 7 + i * 13 + round * 101);
}

std::vector<std::byte> Filled(int src, uint64_t task, uint64_t n, int round) {
  std::vector<std::byte> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = Byte(src, task, i, round);
  return v;
}

// Errors: kInternal naming the first of `n` bytes at `at` that is not the
// pattern of (src, task, round).
Status Expect(const std::byte* at, uint64_t n, int src, uint64_t task,
              int round) {
  for (uint64_t i = 0; i < n; ++i) {
    if (at[i] != Byte(src, task, i, round)) {
      return Internal("task " + std::to_string(task) + " byte " +
                      std::to_string(i) + " round " + std::to_string(round));
    }
  }
  return OkStatus();
}

void ExpectAllOk(const std::vector<Status>& statuses) {
  for (size_t r = 0; r < statuses.size(); ++r) {
    EXPECT_TRUE(statuses[r].ok())
        << "rank " << r << ": " << statuses[r].ToString();
  }
}

ConstBlock Contiguous(const std::vector<std::byte>& v) {
  return {v.data(), v.size(), 1, v.size()};
}

// Three ranks: each sends its successor 50 runs of 40 bytes (strided) as
// task 1, received contiguous, and itself task 2 (contiguous, received as
// 10 runs); two rounds over the same blocks.
TEST(CudaIpcCopyService, MovesExactBytesAcrossRanksAndToItself) {
  constexpr int kWorld = 3;
  ExpectAllOk(OnRanks(kWorld, [](Endpoint& e) -> Status {
    const int next = (e.rank + 1) % kWorld, prev = (e.rank + 2) % kWorld;
    std::vector<std::byte> strided(50 * 48), self(1000);
    std::vector<std::byte> in(2000, std::byte{0}), self_in(10 * 120);
    for (int round = 0; round < 2; ++round) {
      const std::vector<std::byte> data = Filled(e.rank, 1, 2000, round);
      for (int i = 0; i < 50; ++i) {
        std::copy_n(data.data() + i * 40, 40, strided.data() + i * 48);
      }
      self = Filled(e.rank, 2, 1000, round);
      REFIT_RETURN_IF_ERROR(
          e.service->SubmitSend(next, 1, {{strided.data(), 40, 50, 48}}));
      REFIT_RETURN_IF_ERROR(
          e.service->SubmitSend(e.rank, 2, {Contiguous(self)}));
      REFIT_RETURN_IF_ERROR(
          e.service->SubmitRecv(prev, 1, {{in.data(), 2000, 1, 2000}}));
      REFIT_RETURN_IF_ERROR(
          e.service->SubmitRecv(e.rank, 2, {{self_in.data(), 100, 10, 120}}));
      REFIT_RETURN_IF_ERROR(e.service->Run());
      REFIT_RETURN_IF_ERROR(Expect(in.data(), 2000, prev, 1, round));
      for (int i = 0; i < 10; ++i) {
        const std::vector<std::byte> want = Filled(e.rank, 2, 1000, round);
        if (!std::equal(want.begin() + i * 100, want.begin() + i * 100 + 100,
                        self_in.begin() + i * 120)) {
          return Internal("self send, run " + std::to_string(i));
        }
      }
    }
    return OkStatus();
  }));
}

// Rank 0 sends rank 1 tasks 1 and 2, both received into one allocation.
// Round 0 exports it once and maps it once; round 1, with the same blocks,
// exchanges only a header from rank 1 (no export, no mapping, no manifest);
// round 2 receives into a new allocation: exported, mapped, the old
// mapping closed.
TEST(CudaIpcCopyService, UnchangedBlocksExchangeOnlyHeaders) {
  std::vector<Counts> counts(2);
  std::vector<uint64_t> sent_by_receiver(3);
  ExpectAllOk(OnRanks(
      2,
      [&](Endpoint& e) -> Status {
        std::vector<std::byte> a(4096), b(4096);
        e.memory->AddAllocation(a.data(), a.size());
        e.memory->AddAllocation(b.data(), b.size());
        for (int round = 0; round < 3; ++round) {
          std::vector<std::byte>& buf = round < 2 ? a : b;
          const std::vector<std::byte> t1 = Filled(0, 1, 1000, round);
          const std::vector<std::byte> t2 = Filled(0, 2, 400, round);
          const uint64_t before = e.counts->control_bytes_sent;
          if (e.rank == 0) {
            REFIT_RETURN_IF_ERROR(
                e.service->SubmitSend(1, 1, {Contiguous(t1)}));
            REFIT_RETURN_IF_ERROR(
                e.service->SubmitSend(1, 2, {Contiguous(t2)}));
          } else {
            REFIT_RETURN_IF_ERROR(
                e.service->SubmitRecv(0, 1, {{buf.data(), 1000, 1, 1000}}));
            REFIT_RETURN_IF_ERROR(e.service->SubmitRecv(
                0, 2, {{buf.data() + 2048, 100, 4, 200}}));
          }
          REFIT_RETURN_IF_ERROR(e.service->Run());
          if (e.rank == 1) {
            sent_by_receiver[round] = e.counts->control_bytes_sent - before;
            REFIT_RETURN_IF_ERROR(Expect(buf.data(), 1000, 0, 1, round));
            for (int i = 0; i < 4; ++i) {
              const std::byte* run = buf.data() + 2048 + i * 200;
              if (!std::equal(t2.begin() + i * 100, t2.begin() + i * 100 + 100,
                              run)) {
                return Internal("task 2 run " + std::to_string(i));
              }
            }
            if (e.counts->exports != (round < 2 ? 1 : 2)) {
              return Internal("round " + std::to_string(round) + ": " +
                              std::to_string(e.counts->exports) + " exports");
            }
          }
        }
        return OkStatus();
      },
      &counts));
  EXPECT_GT(sent_by_receiver[0], kHeaderBytes);
  EXPECT_EQ(sent_by_receiver[1], kHeaderBytes);
  EXPECT_GT(sent_by_receiver[2], kHeaderBytes);
  EXPECT_EQ(counts[0].opens, 2);   // a in round 0, b in round 2
  EXPECT_EQ(counts[0].closes, 2);  // a in round 2, b at Close
  EXPECT_EQ(counts[1].opens, 0);
}

// The same blocks in a new allocation at the same address (a tensor freed
// and reallocated between refits): not "unchanged"; the receiver exports and
// sends its manifest again, and the bytes land.
TEST(CudaIpcCopyService, AReallocationAtTheSameAddressIsExportedAgain) {
  std::vector<Counts> counts(2);
  std::vector<uint64_t> sent_by_receiver(3);
  ExpectAllOk(OnRanks(
      2,
      [&](Endpoint& e) -> Status {
        std::vector<std::byte> buf(4096);
        e.memory->AddAllocation(buf.data(), buf.size());
        for (int round = 0; round < 3; ++round) {
          if (round == 2) e.memory->AddAllocation(buf.data(), buf.size());
          const std::vector<std::byte> t = Filled(0, 1, 1000, round);
          const uint64_t before = e.counts->control_bytes_sent;
          if (e.rank == 0) {
            REFIT_RETURN_IF_ERROR(e.service->SubmitSend(1, 1, {Contiguous(t)}));
          } else {
            REFIT_RETURN_IF_ERROR(
                e.service->SubmitRecv(0, 1, {{buf.data(), 1000, 1, 1000}}));
          }
          REFIT_RETURN_IF_ERROR(e.service->Run());
          if (e.rank == 1) {
            sent_by_receiver[round] = e.counts->control_bytes_sent - before;
            REFIT_RETURN_IF_ERROR(Expect(buf.data(), 1000, 0, 1, round));
          }
        }
        return OkStatus();
      },
      &counts));
  EXPECT_GT(sent_by_receiver[0], kHeaderBytes);
  EXPECT_EQ(sent_by_receiver[1], kHeaderBytes);
  EXPECT_GT(sent_by_receiver[2], kHeaderBytes);
  EXPECT_EQ(counts[1].exports, 2);
}

// Without reuse_unchanged_manifests, every Run exports and sends the
// manifest again; the sender maps the handle once all the same.
TEST(CudaIpcCopyService, WithoutReuseEveryRunSendsItsManifest) {
  EmbeddedFabric fabric(2, std::chrono::seconds(5));
  Counts counts[2];
  std::vector<Status> statuses(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      auto service = ConnectCudaIpcCopyService(
          std::make_unique<CountingControl>(fabric.Connect(r), &counts[r]),
          std::make_unique<CountingMemory>(&counts[r]),
          {.reuse_unchanged_manifests = false});
      std::vector<std::byte> buf(64);
      for (int round = 0; round < 3 && statuses[r].ok(); ++round) {
        if (r == 0) {
          statuses[r] = (*service)->SubmitSend(1, 9, {Contiguous(buf)});
        } else {
          statuses[r] = (*service)->SubmitRecv(0, 9, {{buf.data(), 64, 1, 64}});
        }
        if (statuses[r].ok()) statuses[r] = (*service)->Run();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ExpectAllOk(statuses);
  EXPECT_EQ(counts[1].exports, 3);
  EXPECT_EQ(counts[0].opens, 1);
}

// Rank 0 sends `sent` bytes as task 5, rank 1 expects `expected`.
std::vector<Status> Mismatch(uint64_t sent, uint64_t expected,
                             bool* untouched) {
  return OnRanks(2, [&](Endpoint& e) -> Status {
    std::vector<std::byte> buf(std::max(sent, expected), std::byte{0xEE});
    if (e.rank == 0) {
      REFIT_RETURN_IF_ERROR(
          e.service->SubmitSend(1, 5, {{buf.data(), sent, 1, sent}}));
      std::fill(buf.begin(), buf.end(), std::byte{1});
    } else {
      REFIT_RETURN_IF_ERROR(
          e.service->SubmitRecv(0, 5, {{buf.data(), expected, 1, expected}}));
    }
    Status st = e.service->Run();
    if (e.rank == 1) {
      *untouched = std::all_of(buf.begin(), buf.end(), [](std::byte b) {
        return b == std::byte{0xEE};
      });
    }
    return st;
  });
}

TEST(CudaIpcCopyService, SizeMismatchFailsTheReceiverAndLeavesItsBytes) {
  for (auto [sent, expected] : {std::pair<uint64_t, uint64_t>{100, 60},
                                std::pair<uint64_t, uint64_t>{60, 100}}) {
    bool untouched = false;
    const std::vector<Status> st = Mismatch(sent, expected, &untouched);
    ASSERT_EQ(st.size(), 2u);
    EXPECT_TRUE(st[0].ok()) << st[0].ToString();
    EXPECT_EQ(st[1].code(), StatusCode::kFailedPrecondition);
    EXPECT_THAT(st[1].message(),
                AllOf(HasSubstr("task 5 from rank 0 to rank 1"),
                      HasSubstr("carries " + std::to_string(sent) + " bytes"),
                      HasSubstr("expects " + std::to_string(expected))));
    EXPECT_TRUE(untouched);
  }
}

TEST(CudaIpcCopyService, ATaskTheSenderDidNotSubmitFailsTheReceiver) {
  const std::vector<Status> st = OnRanks(2, [](Endpoint& e) -> Status {
    std::vector<std::byte> five = Filled(0, 5, 32, 0), six(16);
    if (e.rank == 0) {
      REFIT_RETURN_IF_ERROR(e.service->SubmitSend(1, 5, {Contiguous(five)}));
      return e.service->Run();
    }
    std::vector<std::byte> in(32);
    REFIT_RETURN_IF_ERROR(
        e.service->SubmitRecv(0, 5, {{in.data(), 32, 1, 32}}));
    REFIT_RETURN_IF_ERROR(
        e.service->SubmitRecv(0, 6, {{six.data(), 16, 1, 16}}));
    Status run = e.service->Run();
    // Task 5 landed all the same.
    REFIT_RETURN_IF_ERROR(Expect(in.data(), 32, 0, 5, 0));
    return run;
  });
  ASSERT_EQ(st.size(), 2u);
  EXPECT_TRUE(st[0].ok()) << st[0].ToString();
  EXPECT_EQ(st[1].code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(st[1].message(),
              HasSubstr("task 6 from rank 0 to rank 1 was not submitted"));
}

TEST(CudaIpcCopyService, ASendTheReceiverDidNotSubmitFailsTheSender) {
  const std::vector<Status> st = OnRanks(2, [](Endpoint& e) -> Status {
    std::vector<std::byte> buf(16);
    if (e.rank == 0) {
      REFIT_RETURN_IF_ERROR(e.service->SubmitSend(1, 5, {Contiguous(buf)}));
      REFIT_RETURN_IF_ERROR(e.service->SubmitSend(1, 6, {Contiguous(buf)}));
    } else {
      REFIT_RETURN_IF_ERROR(
          e.service->SubmitRecv(0, 5, {{buf.data(), 16, 1, 16}}));
    }
    return e.service->Run();
  });
  ASSERT_EQ(st.size(), 2u);
  EXPECT_TRUE(st[1].ok()) << st[1].ToString();
  EXPECT_EQ(st[0].code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(st[0].message(),
              HasSubstr("task 6 from rank 0 to rank 1: rank 1 submitted no "
                        "receive for it"));
}

TEST(CudaIpcCopyService, AReceiverThatCannotExportFailsAloneAndSoon) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<Status> st = OnRanks(2, [](Endpoint& e) -> Status {
    std::vector<std::byte> buf(16);
    if (e.rank == 0) {
      REFIT_RETURN_IF_ERROR(e.service->SubmitSend(1, 5, {Contiguous(buf)}));
    } else {
      e.counts->refuse_exports = true;
      REFIT_RETURN_IF_ERROR(
          e.service->SubmitRecv(0, 5, {{buf.data(), 16, 1, 16}}));
    }
    return e.service->Run();
  });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  ASSERT_EQ(st.size(), 2u);
  EXPECT_TRUE(st[0].ok()) << st[0].ToString();
  EXPECT_EQ(st[1].code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(st[1].message(),
              AllOf(HasSubstr("rank 1 cannot export the receive blocks of "
                              "task 5 from rank 0 to rank 1"),
                    HasSubstr("no exports here")));
}

TEST(CudaIpcCopyService, AReceiverThatSubmitsNothingLeavesTheSenderADeadline) {
  const std::vector<Status> st = OnRanks(
      2,
      [](Endpoint& e) -> Status {
        std::vector<std::byte> buf(16);
        if (e.rank == 0) {
          REFIT_RETURN_IF_ERROR(e.service->SubmitSend(1, 5, {Contiguous(buf)}));
        }
        return e.service->Run();
      },
      nullptr, std::chrono::milliseconds(200));
  ASSERT_EQ(st.size(), 2u);
  EXPECT_TRUE(st[1].ok()) << st[1].ToString();
  EXPECT_EQ(st[0].code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(st[0].message(),
              AllOf(HasSubstr("rank 0 (sends task 5 to rank 1), exchanging "
                              "headers"),
                    HasSubstr("rank 0 waited 0.2 s")));
}

TEST(CudaIpcCopyService, SelfSendOfAnotherSizeFailsNamingTheTask) {
  const std::vector<Status> st = OnRanks(1, [](Endpoint& e) -> Status {
    std::vector<std::byte> buf(12);
    REFIT_RETURN_IF_ERROR(
        e.service->SubmitSend(0, 3, {{buf.data(), 10, 1, 10}}));
    REFIT_RETURN_IF_ERROR(
        e.service->SubmitRecv(0, 3, {{buf.data(), 12, 1, 12}}));
    return e.service->Run();
  });
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(st[0].message(),
              HasSubstr("task 3 from rank 0 to rank 0 carries 10 bytes, "
                        "receiver expects 12"));
}

TEST(CudaIpcCopyService, CapabilitiesSubmitsAndClose) {
  EmbeddedFabric fabric(1);
  Result<std::unique_ptr<CopyService>> service = ConnectCudaIpcCopyService(
      fabric.Connect(0), std::make_unique<ThreadIpcMemory>());
  ASSERT_TRUE(service.ok()) << service.status().ToString();
  CopyService& s = **service;
  const TransportCapabilities caps = s.capabilities();
  EXPECT_EQ(caps.reads, std::vector<MemoryKind>{MemoryKind::kHost});
  EXPECT_EQ(caps.writes, std::vector<MemoryKind>{MemoryKind::kHost});
  EXPECT_TRUE(caps.receives_in_place);
  EXPECT_EQ(caps.max_message_bytes, UINT64_MAX);
  EXPECT_EQ(caps.max_staging_bytes, 0u);
  std::vector<std::byte> buf(8);
  EXPECT_TRUE(s.SubmitSend(0, 1, {Contiguous(buf)}).ok());
  EXPECT_EQ(s.SubmitSend(0, 1, {Contiguous(buf)}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(s.SubmitRecv(0, 1, {{buf.data(), 8, 1, 8}}).ok());
  EXPECT_TRUE(s.Run().ok());
  EXPECT_TRUE(s.Close().ok());
  EXPECT_EQ(s.Run().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.SubmitSend(0, 1, {}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      ConnectCudaIpcCopyService(nullptr, std::make_unique<ThreadIpcMemory>())
          .status()
          .code(),
      StatusCode::kInvalidArgument);
}

TEST(IpcManifest, RoundTripsAndRefusesCorruptWords) {
  ipc::Manifest m;
  m.exports.push_back({IpcHandle{}, 4096});
  m.exports[0].handle.bytes[3] = std::byte{7};
  m.messages.push_back({11, 300, {{0, 100, 100, 3, 1000}}});
  m.messages.push_back({12, 0, {}});
  // 100 + 2 * 1000 + 100 = 2200 <= 4096.
  const std::vector<uint64_t> words = ipc::EncodeManifest(m);
  Result<ipc::Manifest> back = ipc::DecodeManifest(words);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->exports[0].handle, m.exports[0].handle);
  EXPECT_EQ(back->messages[0].blocks[0].stride, 1000u);
  EXPECT_EQ(back->messages[1].task_id, 12u);

  std::vector<uint64_t> cut(words.begin(), words.end() - 1);
  EXPECT_EQ(ipc::DecodeManifest(cut).status().code(), StatusCode::kDataLoss);
  std::vector<uint64_t> longer = words;
  longer.push_back(0);
  EXPECT_EQ(ipc::DecodeManifest(longer).status().code(), StatusCode::kDataLoss);
  ipc::Manifest beyond = m;
  beyond.messages[0].blocks[0].offset = 2000;  // ends at 4100 > 4096
  EXPECT_THAT(
      ipc::DecodeManifest(ipc::EncodeManifest(beyond)).status().message(),
      HasSubstr("ends beyond its allocation"));
  ipc::Manifest wrong_total = m;
  wrong_total.messages[0].total_bytes = 301;
  EXPECT_EQ(
      ipc::DecodeManifest(ipc::EncodeManifest(wrong_total)).status().code(),
      StatusCode::kDataLoss);
  std::array<uint64_t, ipc::kHeaderWords> header =
      ipc::EncodeHeader({ipc::kUnchanged, 2, 0, 9});
  EXPECT_EQ(ipc::DecodeHeader(header)->generation, 9u);
  header[0] = 0;
  EXPECT_FALSE(ipc::DecodeHeader(header).ok());
}

TEST(ThreadIpcMemory, ExportsDeclaredAllocationsAsOne) {
  ThreadIpcMemory memory;
  std::vector<std::byte> buf(100);
  memory.AddAllocation(buf.data(), buf.size());
  Result<IpcExport> a = memory.Export(buf.data() + 10);
  Result<IpcExport> b = memory.Export(buf.data() + 90);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->handle, b->handle);
  EXPECT_EQ(a->offset, 10u);
  EXPECT_EQ(b->allocation_bytes, 100u);
  EXPECT_EQ(*memory.Open(a->handle), buf.data());
  EXPECT_EQ(memory.Export(nullptr).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(IpcMappings, OpensOnceAndClosesWithTheLastHolder) {
  Counts counts;
  CountingMemory memory(&counts);
  std::vector<std::byte> buf(8);
  const IpcHandle handle = memory.Export(buf.data())->handle;
  {
    IpcMappings mappings(&memory);
    EXPECT_EQ(*mappings.Acquire(handle), buf.data());
    EXPECT_EQ(*mappings.Acquire(handle), buf.data());
    EXPECT_EQ(counts.opens, 1);
    EXPECT_TRUE(mappings.Release(handle).ok());
    EXPECT_EQ(counts.closes, 0);
    EXPECT_TRUE(mappings.Release(handle).ok());
    EXPECT_EQ(counts.closes, 1);
    EXPECT_EQ(mappings.size(), 0u);
    EXPECT_TRUE(mappings.Acquire(handle).ok());
  }
  EXPECT_EQ(counts.opens, 2);
  EXPECT_EQ(counts.closes, 2);  // the last one when `mappings` went away
}

TEST(CudaIpcMemory, WithoutCudaSaysSo) {
  Result<std::unique_ptr<IpcMemory>> memory = CudaIpcMemory();
  if (HaveCuda()) {
    ASSERT_TRUE(memory.ok()) << memory.status().ToString();
    EXPECT_EQ((*memory)->kinds(), std::vector<MemoryKind>{MemoryKind::kCuda});
  } else {
    EXPECT_EQ(memory.status().code(), StatusCode::kUnimplemented);
    EXPECT_THAT(memory.status().message(), HasSubstr("no CUDA"));
  }
}

}  // namespace
}  // namespace refit::exec
