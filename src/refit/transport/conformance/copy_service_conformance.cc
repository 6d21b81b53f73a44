// The conformance cases every transport must pass, written against
// TransportHarness only. Every case checks exact bytes: each received byte
// against the sender's pattern, and the gap bytes around each receive block
// for stray writes.
#include "refit/transport/conformance/copy_service_conformance.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>

namespace refit::exec::conformance {

namespace {

using std::chrono::milliseconds;
using ::testing::AnyOf;
using ::testing::HasSubstr;

TransportHarness* g_harness = nullptr;

// Where the cases' buffers live (nullptr: host memory).
RegionMemory* Mem() { return g_harness->region_memory(); }

// Fills the gaps between and around blocks; a receive must leave them be.
constexpr std::byte kGap{0xA5};
// Gap bytes before every block and after the last.
constexpr uint64_t kPad = 8;

// Byte i of the message src -> dst `task` in round `round`.
std::byte Pattern(int src, int dst, uint64_t task, uint64_t i, int round) {
  const uint64_t h = (src + 1) * 0x9E3779B1ull ^ (dst + 1) * 0x85EBCA77ull ^
                     (task + 1) * 0xC2B2AE3Dull ^ (round + 1) * 0x27D4EB2Full;
  return static_cast<std::byte>((h >> 11) + i * 131 + (i >> 8) * 7);
}

// `nruns` runs of `run` bytes, `stride` bytes apart.
struct BlockSpec {
  uint64_t run = 0;
  uint64_t nruns = 1;
  uint64_t stride = 0;
  uint64_t footprint() const {
    return nruns == 0 ? 0 : (nruns - 1) * stride + run;
  }
};

BlockSpec Contiguous(uint64_t bytes) { return {bytes, 1, bytes}; }
BlockSpec Strided(uint64_t run, uint64_t nruns, uint64_t gap) {
  return {run, nruns, run + gap};
}

// Memory for the blocks `specs` (in that order, kPad gap bytes before each
// and after the last) and their block lists: host memory, or the harness's
// RegionMemory with a host shadow it is filled from and checked against.
class Region {
 public:
  explicit Region(std::vector<BlockSpec> specs, RegionMemory* memory = nullptr)
      : specs_(std::move(specs)), memory_(memory) {
    uint64_t at = kPad;
    for (const BlockSpec& s : specs_) {
      offsets_.push_back(at);
      at += s.footprint() + kPad;
    }
    mem_.assign(at, kGap);
    if (memory_ != nullptr) {
      Result<std::byte*> d = memory_->Allocate(at);
      status_ = d.status();
      if (d.ok()) device_ = *d;
    }
  }
  ~Region() {
    if (device_ != nullptr) memory_->Free(device_);
  }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  // Every byte of the message in order: fn(index in the message, byte).
  template <typename Fn>
  void ForEach(Fn&& fn) {
    uint64_t i = 0;
    for (size_t b = 0; b < specs_.size(); ++b) {
      const BlockSpec& s = specs_[b];
      for (uint64_t r = 0; r < s.nruns; ++r) {
        std::byte* run = mem_.data() + offsets_[b] + r * s.stride;
        for (uint64_t k = 0; k < s.run; ++k) fn(i++, run[k]);
      }
    }
  }

  Status Fill(int src, int dst, uint64_t task, int round) {
    ForEach([&](uint64_t i, std::byte& b) {
      b = Pattern(src, dst, task, i, round);
    });
    return Sync();
  }
  Status Clear() {
    std::fill(mem_.begin(), mem_.end(), kGap);
    return Sync();
  }

  // Errors: kInternal naming the first byte that is not the sender's
  // pattern, or a gap byte that was written.
  Status Expect(int src, int dst, uint64_t task, int round) {
    if (device_ != nullptr) {
      REFIT_RETURN_IF_ERROR(
          memory_->Download(mem_.data(), device_, mem_.size()));
    }
    Region want(specs_);
    REFIT_RETURN_IF_ERROR(want.Fill(src, dst, task, round));
    const auto diff =
        std::mismatch(mem_.begin(), mem_.end(), want.mem_.begin());
    if (diff.first == mem_.end()) return OkStatus();
    return Internal("task " + std::to_string(task) + " from rank " +
                    std::to_string(src) + " to rank " + std::to_string(dst) +
                    ": byte at offset " +
                    std::to_string(diff.first - mem_.begin()) + " is " +
                    std::to_string(static_cast<int>(*diff.first)) + ", want " +
                    std::to_string(static_cast<int>(*diff.second)));
  }

  std::vector<ConstBlock> Const() const {
    std::vector<ConstBlock> blocks;
    for (size_t b = 0; b < specs_.size(); ++b) {
      const BlockSpec& s = specs_[b];
      blocks.push_back({Base() + offsets_[b], s.run, s.nruns, s.stride});
    }
    return blocks;
  }
  std::vector<MutBlock> Mut() {
    std::vector<MutBlock> blocks;
    for (size_t b = 0; b < specs_.size(); ++b) {
      const BlockSpec& s = specs_[b];
      blocks.push_back({Base() + offsets_[b], s.run, s.nruns, s.stride});
    }
    return blocks;
  }

  // The host shadow (the region itself in host memory).
  std::byte* host() { return mem_.data(); }
  // Host shadow -> the harness's memory, and back.
  Status Sync() {
    REFIT_RETURN_IF_ERROR(status_);
    if (device_ == nullptr) return OkStatus();
    return memory_->Upload(device_, mem_.data(), mem_.size());
  }
  Status Fetch() {
    if (device_ == nullptr) return OkStatus();
    return memory_->Download(mem_.data(), device_, mem_.size());
  }

 private:
  std::byte* Base() const {
    return device_ != nullptr ? device_ : const_cast<std::byte*>(mem_.data());
  }

  std::vector<BlockSpec> specs_;
  std::vector<uint64_t> offsets_;
  std::vector<std::byte> mem_;
  RegionMemory* memory_ = nullptr;
  std::byte* device_ = nullptr;
  Status status_;
};

// One message of a case, as its sender and its receiver lay it out.
struct MessageSpec {
  int src = 0;
  int dst = 0;
  uint64_t task = 0;
  std::vector<BlockSpec> send;
  std::vector<BlockSpec> recv;
};

// Runs `rank`'s part of `messages` `rounds` times over one endpoint, each
// round with its own bytes; the buffers are those of the last round in round
// 1 and new memory in round 2. Errors: a Run's, or wrong bytes.
Status RunMessages(int rank, CopyService& service,
                   const std::vector<MessageSpec>& messages, int rounds) {
  std::vector<const MessageSpec*> sends, recvs;
  for (const MessageSpec& m : messages) {
    if (m.src == rank) sends.push_back(&m);
    if (m.dst == rank) recvs.push_back(&m);
  }
  std::vector<std::unique_ptr<Region>> out(sends.size()), in(recvs.size());
  for (int round = 0; round < rounds; ++round) {
    for (size_t i = 0; i < sends.size(); ++i) {
      if (round != 1) out[i] = std::make_unique<Region>(sends[i]->send, Mem());
      REFIT_RETURN_IF_ERROR(
          out[i]->Fill(sends[i]->src, sends[i]->dst, sends[i]->task, round));
      REFIT_RETURN_IF_ERROR(
          service.SubmitSend(sends[i]->dst, sends[i]->task, out[i]->Const()));
    }
    for (size_t i = 0; i < recvs.size(); ++i) {
      if (round != 1) in[i] = std::make_unique<Region>(recvs[i]->recv, Mem());
      REFIT_RETURN_IF_ERROR(in[i]->Clear());
      REFIT_RETURN_IF_ERROR(
          service.SubmitRecv(recvs[i]->src, recvs[i]->task, in[i]->Mut()));
    }
    const Status st = service.Run();
    if (!st.ok()) {
      return Status(st.code(),
                    "round " + std::to_string(round) + ": " + st.message());
    }
    for (size_t i = 0; i < recvs.size(); ++i) {
      REFIT_RETURN_IF_ERROR(
          in[i]->Expect(recvs[i]->src, recvs[i]->dst, recvs[i]->task, round));
    }
  }
  return OkStatus();
}

int World() { return g_harness->world_size(); }

// Every case: skipped with the harness's reason where it cannot run.
class CopyServiceConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = g_harness->skip_reason();
    if (!why.empty()) GTEST_SKIP() << why;
  }
};

// Runs `body` on every rank; returns every rank's Status (empty on a harness
// failure, which fails the test).
std::vector<Status> RunOnRanks(const EndpointOptions& options,
                               const RankBody& body) {
  Result<std::vector<Status>> statuses = g_harness->RunOnRanks(options, body);
  EXPECT_TRUE(statuses.ok()) << statuses.status().ToString();
  if (!statuses.ok()) return {};
  EXPECT_EQ(statuses->size(), static_cast<size_t>(World()));
  return *std::move(statuses);
}

void ExpectAllOk(const std::vector<Status>& statuses) {
  for (size_t r = 0; r < statuses.size(); ++r) {
    EXPECT_TRUE(statuses[r].ok())
        << "rank " << r << ": " << statuses[r].ToString();
  }
}

// Every rank runs `messages` `rounds` times and must see exact bytes.
void ExpectMessages(const std::vector<MessageSpec>& messages, int rounds = 1,
                    const EndpointOptions& options = {}) {
  ExpectAllOk(RunOnRanks(options, [&](int rank, CopyService& service) {
    return RunMessages(rank, service, messages, rounds);
  }));
}

// Every rank sends to the next rank and to the one before (tasks 1 and 2).
std::vector<MessageSpec> Ring() {
  std::vector<MessageSpec> messages;
  const int n = World();
  for (int r = 0; r < n; ++r) {
    messages.push_back({r,
                        (r + 1) % n,
                        1,
                        {Strided(40 + r, 50, 8)},
                        {Contiguous(50 * (40 + r))}});
    messages.push_back({r,
                        (r + n - 1) % n,
                        2,
                        {Contiguous(3000 + r)},
                        {Strided(3000 + r, 1, 0)}});
  }
  return messages;
}

// The messages of RaggedSizes from `src` to `dst`: empty (no blocks, blocks
// of no bytes), 1 byte, an odd size, strided multi-run blocks on both sides,
// and about 8 MiB to the next rank.
void AddRagged(int src, int dst, std::vector<MessageSpec>& messages) {
  const uint64_t big_task = (uint64_t{1} << 40) + 5;
  messages.push_back({src, dst, 1000, {}, {}});
  messages.push_back({src, dst, 1001, {{0, 1, 0}}, {{7, 0, 9}}});
  messages.push_back({src, dst, 1002, {Contiguous(1)}, {Strided(1, 1, 3)}});
  messages.push_back({src,
                      dst,
                      1003,
                      {Contiguous(4099)},
                      {Strided(7, 585, 4), Contiguous(4)}});
  messages.push_back(
      {src,
       dst,
       1004,
       {Strided(24, 500, 16), Strided(8, 1500, 8), Contiguous(3)},
       {Strided(40, 600, 16), Strided(1, 3, 1)}});
  if (dst == (src + 1) % World()) {
    messages.push_back({src,
                        dst,
                        big_task,
                        {Strided(1 << 20, 8, 4096), Contiguous(13)},
                        {Strided(1 << 16, 128, 64), Contiguous(13)}});
  }
}

TEST_F(CopyServiceConformance, EmptyPlanRunsRepeatedly) {
  ExpectAllOk(RunOnRanks({}, [](int rank, CopyService& service) {
    for (int i = 0; i < 3; ++i) REFIT_RETURN_IF_ERROR(service.Run());
    // Still usable for real messages afterwards.
    return RunMessages(rank, service, Ring(), 1);
  }));
}

TEST_F(CopyServiceConformance, SelfSend) {
  std::vector<MessageSpec> messages;
  for (int r = 0; r < World(); ++r) {
    messages.push_back(
        {r, r, 1, {Contiguous(1000 + r)}, {Strided(1000 + r, 1, 0)}});
    messages.push_back(
        {r, r, 2, {Strided(64, 1600, 32)}, {Strided(100, 1024, 28)}});
  }
  ExpectMessages(messages, 2);
}

TEST_F(CopyServiceConformance, ManyToOne) {
  std::vector<MessageSpec> messages;
  for (int r = 1; r < World(); ++r) {
    const uint64_t run = 16 + r, nruns = 1000 + r;
    messages.push_back(
        {r, 0, 7, {Strided(run, nruns, r)}, {Contiguous(run * nruns)}});
  }
  ExpectMessages(messages);
}

TEST_F(CopyServiceConformance, OneToMany) {
  std::vector<MessageSpec> messages;
  for (int r = 1; r < World(); ++r) {
    const uint64_t run = 30 + 3 * r, nruns = 700 + r;
    messages.push_back(
        {0, r, 7, {Contiguous(run * nruns)}, {Strided(run, nruns, 2 * r)}});
  }
  ExpectMessages(messages);
}

TEST_F(CopyServiceConformance, RaggedSizes) {
  std::vector<MessageSpec> messages;
  for (int src = 0; src < World(); ++src) {
    for (int dst = 0; dst < World(); ++dst) AddRagged(src, dst, messages);
  }
  ExpectMessages(messages);
}

TEST_F(CopyServiceConformance, RepeatedRunsReuseTheEndpoint) {
  // Round 1 reuses the blocks of round 0, round 2 moves them.
  ExpectMessages(Ring(), 4);
}

// The record of a rank's capabilities sent to rank 0.
std::array<uint64_t, 5> Record(const TransportCapabilities& caps) {
  auto mask = [](const std::vector<MemoryKind>& kinds) {
    uint64_t m = 0;
    for (MemoryKind k : kinds) m |= uint64_t{1} << static_cast<int>(k);
    return m;
  };
  return {mask(caps.reads), mask(caps.writes), caps.receives_in_place,
          caps.max_message_bytes, caps.max_staging_bytes};
}

// Errors: kInternal when `caps` do not fit `options` or a message of
// `message_bytes`.
Status CheckCapabilities(const TransportCapabilities& caps,
                         const EndpointOptions& options,
                         uint64_t message_bytes) {
  const MemoryKind kind = Mem() ? Mem()->kind() : MemoryKind::kHost;
  if (!caps.CanRead(kind) || !caps.CanWrite(kind)) {
    return Internal("capabilities: no " + std::string(MemoryKindName(kind)) +
                    " memory");
  }
  if (caps.max_message_bytes < message_bytes) {
    return Internal("capabilities: max_message_bytes " +
                    std::to_string(caps.max_message_bytes));
  }
  if (caps.max_staging_bytes > options.max_staging_bytes) {
    return Internal("capabilities: staging bound " +
                    std::to_string(caps.max_staging_bytes) +
                    " exceeds the configured " +
                    std::to_string(options.max_staging_bytes));
  }
  return OkStatus();
}

// Every rank sends its capabilities record to rank 0, which compares them
// with its own. Errors: kInternal naming a rank whose record differs.
Status SameCapabilitiesEverywhere(int rank, CopyService& service) {
  using Rec = std::array<uint64_t, 5>;
  const Rec mine = Record(service.capabilities());
  // The records travel in the cases' memory: one contiguous block each.
  Region out({Contiguous(sizeof(Rec))}, Mem());
  std::memcpy(out.host() + kPad, mine.data(), sizeof(Rec));
  REFIT_RETURN_IF_ERROR(out.Sync());
  std::vector<std::unique_ptr<Region>> in;
  REFIT_RETURN_IF_ERROR(service.SubmitSend(0, 99, out.Const()));
  for (int r = 0; r < (rank == 0 ? World() : 0); ++r) {
    in.push_back(
        std::make_unique<Region>(std::vector{Contiguous(sizeof(Rec))}, Mem()));
    REFIT_RETURN_IF_ERROR(in.back()->Sync());
    REFIT_RETURN_IF_ERROR(service.SubmitRecv(r, 99, in.back()->Mut()));
  }
  REFIT_RETURN_IF_ERROR(service.Run());
  for (int r = 0; r < static_cast<int>(in.size()); ++r) {
    REFIT_RETURN_IF_ERROR(in[r]->Fetch());
    Rec theirs;
    std::memcpy(theirs.data(), in[r]->host() + kPad, sizeof(Rec));
    if (theirs != mine) {
      return Internal("rank " + std::to_string(r) +
                      "'s capabilities differ from rank 0's");
    }
  }
  return OkStatus();
}

// A bound of 4 KiB of staging per rank: 64 KiB messages of 8-byte runs on
// both sides (every byte staged by a transport that stages small pieces)
// still arrive, and every rank reports the same capabilities, within the
// bound.
TEST_F(CopyServiceConformance, StagingBoundRespected) {
  EndpointOptions options;
  options.max_staging_bytes = 4096;
  constexpr uint64_t kBytes = 64 << 10;
  std::vector<MessageSpec> messages;
  for (int r = 0; r < World(); ++r) {
    messages.push_back({r,
                        (r + 1) % World(),
                        3,
                        {Strided(8, kBytes / 8, 8)},
                        {Strided(16, kBytes / 16, 8)}});
  }
  ExpectAllOk(RunOnRanks(options, [&](int rank, CopyService& service) {
    REFIT_RETURN_IF_ERROR(
        CheckCapabilities(service.capabilities(), options, kBytes));
    REFIT_RETURN_IF_ERROR(SameCapabilitiesEverywhere(rank, service));
    return RunMessages(rank, service, messages, 2);
  }));
}

// Rank 0 sends rank 1 `sent` bytes as task 5; rank 1 expects `expected`.
std::vector<Status> MismatchedSizes(uint64_t sent, uint64_t expected) {
  EndpointOptions options;
  options.timeout = std::chrono::seconds(5);
  return RunOnRanks(options, [&](int rank, CopyService& service) {
    Region buf({Contiguous(std::max(sent, expected))}, Mem());
    REFIT_RETURN_IF_ERROR(buf.Sync());
    std::byte* base = buf.Mut()[0].base;
    if (rank == 0) {
      REFIT_RETURN_IF_ERROR(service.SubmitSend(1, 5, {{base, sent, 1, sent}}));
    } else if (rank == 1) {
      REFIT_RETURN_IF_ERROR(
          service.SubmitRecv(0, 5, {{base, expected, 1, expected}}));
    }
    return service.Run();
  });
}

void ExpectSizeErrorOnReceiver(const std::vector<Status>& statuses) {
  ASSERT_EQ(statuses.size(), static_cast<size_t>(World()));
  for (int r = 0; r < World(); ++r) {
    if (r == 1) continue;
    EXPECT_TRUE(statuses[r].ok())
        << "rank " << r << ": " << statuses[r].ToString();
  }
  const Status& st = statuses[1];
  EXPECT_THAT(st.code(), AnyOf(StatusCode::kFailedPrecondition,
                               StatusCode::kInvalidArgument))
      << st.ToString();
  EXPECT_THAT(st.message(), HasSubstr("task 5 from rank 0"));
  EXPECT_THAT(st.message(), HasSubstr("rank 1"));
}

TEST_F(CopyServiceConformance, LongerMessageThanReceiveIsAnError) {
  ExpectSizeErrorOnReceiver(MismatchedSizes(100, 60));
}

TEST_F(CopyServiceConformance, ShorterMessageThanReceiveIsAnError) {
  ExpectSizeErrorOnReceiver(MismatchedSizes(60, 100));
}

// Rank 1 waits for task 7 from rank 2, which never sends: with a 300 ms
// timeout its Run fails with kDeadlineExceeded naming rank 2, soon.
TEST_F(CopyServiceConformance, SilentPeerIsADeadlineError) {
  EndpointOptions options;
  options.timeout = milliseconds(300);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<Status> statuses =
      RunOnRanks(options, [](int rank, CopyService& service) {
        Region buf({Contiguous(64)}, Mem());
        REFIT_RETURN_IF_ERROR(buf.Sync());
        if (rank == 1) {
          REFIT_RETURN_IF_ERROR(service.SubmitRecv(2, 7, buf.Mut()));
        }
        return service.Run();
      });
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::seconds(10));
  ASSERT_EQ(statuses.size(), static_cast<size_t>(World()));
  for (int r = 0; r < World(); ++r) {
    if (r == 1) continue;
    EXPECT_TRUE(statuses[r].ok())
        << "rank " << r << ": " << statuses[r].ToString();
  }
  EXPECT_EQ(statuses[1].code(), StatusCode::kDeadlineExceeded)
      << statuses[1].ToString();
  EXPECT_THAT(statuses[1].message(), HasSubstr("rank 1 waited 0.3 s"));
  EXPECT_THAT(statuses[1].message(), HasSubstr("task 7 from rank 2"));
}

}  // namespace

std::vector<Status> RunOnThreads(int world, const Connect& connect,
                                 const RankBody& body) {
  std::vector<Status> statuses(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      Result<std::unique_ptr<CopyService>> service = connect(r);
      if (!service.ok()) {
        statuses[r] = service.status();
        return;
      }
      statuses[r] = body(r, **service);
      const Status closed = (*service)->Close();
      if (statuses[r].ok()) statuses[r] = closed;
    });
  }
  for (std::thread& t : threads) t.join();
  return statuses;
}

void SetHarness(TransportHarness* harness) { g_harness = harness; }

}  // namespace refit::exec::conformance
