// Fault injection over the conformance suite's thread transports (embedded;
// p2p over the thread backend): every corruption is caught with checksums
// on (counted exactly), goes unnoticed without them, and every drop, late
// message or dead rank ends in an error within the timeout, never a hang.
#include "refit/transport/faulty/faulty_copy_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "refit/exec/checksum_copy_service.h"
#include "refit/transport/embedded/embedded_copy_service.h"
#include "refit/transport/faulty/fault_test_util.h"
#include "refit/transport/p2p/p2p_copy_service.h"
#include "refit/transport/p2p/thread_p2p_backend.h"

namespace refit::exec {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr int kWorld = 4;

using fault_test::Corruptions;
using fault_test::Endpoint;
using fault_test::Message;
using fault_test::RankRound;

std::vector<Message> AllMessages() { return fault_test::AllMessages(kWorld); }

// Runs `rounds` rounds of AllMessages on every rank of `world` endpoints,
// one thread per rank (fault_test::RunRank).
std::vector<std::vector<RankRound>> RunRounds(std::vector<Endpoint>& eps,
                                              int rounds) {
  std::vector<std::vector<RankRound>> out(rounds,
                                          std::vector<RankRound>(kWorld));
  const std::vector<Message> all = AllMessages();
  std::vector<std::thread> threads;
  for (int rank = 0; rank < kWorld; ++rank) {
    threads.emplace_back([&, rank] {
      for (int round = 0; round < rounds; ++round) {
        out[round][rank] = fault_test::RunRank(eps[rank], rank, round, all);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

// The transports, as in the conformance suite.
enum class Transport { kEmbedded, kP2p };

class Fabric {
 public:
  Fabric(Transport t, milliseconds timeout) : timeout_(timeout) {
    if (t == Transport::kEmbedded) {
      embedded_ = std::make_unique<EmbeddedFabric>(kWorld, timeout);
    } else {
      p2p_ = std::make_unique<ThreadP2pFabric>(kWorld,
                                               ThreadP2pOptions{timeout, true});
    }
  }
  std::unique_ptr<CopyService> Connect(int rank) {
    if (embedded_) return embedded_->Connect(rank);
    P2pCopyOptions o;
    o.timeout = timeout_;
    return MakeP2pCopyService(p2p_->Connect(rank), o);
  }

 private:
  milliseconds timeout_;
  std::unique_ptr<EmbeddedFabric> embedded_;
  std::unique_ptr<ThreadP2pFabric> p2p_;
};

// Every rank: faulty over `fabric`, under a checksum layer when `checksum`.
std::vector<Endpoint> Connect(Fabric& fabric, const FaultPlan& plan,
                              FaultLog& log, bool checksum) {
  std::vector<Endpoint> eps;
  for (int r = 0; r < kWorld; ++r) {
    eps.push_back(fault_test::Wrap(fabric.Connect(r), plan, log, checksum));
  }
  return eps;
}

// How many messages of `rounds` rounds `plan` gives fault `kind`.
uint64_t Planned(const FaultPlan& plan, FaultKind kind, int rounds) {
  return fault_test::Planned(plan, kind, rounds, kWorld);
}

class FaultTest : public ::testing::TestWithParam<Transport> {};

TEST_P(FaultTest, EveryCorruptionIsCaughtByChecksums) {
  constexpr int kRounds = 6;
  const FaultPlan plan = Corruptions(11);
  FaultLog log;
  Fabric fabric(GetParam(), milliseconds(2000));
  std::vector<Endpoint> eps = Connect(fabric, plan, log, /*checksum=*/true);
  const auto rounds = RunRounds(eps, kRounds);
  uint64_t detected = 0, failed_runs = 0;
  for (const Endpoint& e : eps) detected += e.checksum->mismatches();
  for (const auto& round : rounds) {
    for (const RankRound& rr : round) {
      if (rr.status.ok()) {
        EXPECT_EQ(rr.wrong, 0u);
        continue;
      }
      ++failed_runs;
      EXPECT_EQ(rr.status.code(), StatusCode::kDataLoss)
          << rr.status.ToString();
      EXPECT_THAT(rr.status.message(), HasSubstr("checksum: task "));
    }
  }
  // Every injected corruption (flip, truncate, duplicate, reorder, replay of
  // the previous round) is detected, and nothing else is.
  // The fixed plan and data give 55 corruptions, on both transports.
  EXPECT_EQ(log.corruptions(), 55u);
  EXPECT_EQ(detected, log.corruptions());
  for (FaultKind k :
       {FaultKind::kFlipBit, FaultKind::kTruncate, FaultKind::kDuplicate,
        FaultKind::kReorder, FaultKind::kReplay}) {
    EXPECT_GT(log.count(k), 0u) << FaultKindName(k);
  }
  // With the 16-byte trailer every message has bytes, so every planned
  // flip, truncation, duplication and reorder applies (a replay needs a
  // previous round); each changes bytes as the plan and data are fixed.
  EXPECT_EQ(log.count(FaultKind::kFlipBit),
            Planned(plan, FaultKind::kFlipBit, kRounds));
  EXPECT_GT(failed_runs, 0u);
  std::cout << "injected corruptions " << log.corruptions() << " (flip "
            << log.count(FaultKind::kFlipBit) << ", truncate "
            << log.count(FaultKind::kTruncate) << ", duplicate "
            << log.count(FaultKind::kDuplicate) << ", reorder "
            << log.count(FaultKind::kReorder) << ", replay "
            << log.count(FaultKind::kReplay) << "), detected " << detected
            << ", failed runs " << failed_runs << "\n";
  for (Endpoint& e : eps) EXPECT_TRUE(e.service->Close().ok());
}

TEST_P(FaultTest, CorruptionsGoUnnoticedWithoutChecksums) {
  constexpr int kRounds = 6;
  const FaultPlan plan = Corruptions(11);
  FaultLog log;
  Fabric fabric(GetParam(), milliseconds(2000));
  std::vector<Endpoint> eps = Connect(fabric, plan, log, /*checksum=*/false);
  const auto rounds = RunRounds(eps, kRounds);
  uint64_t wrong = 0;
  for (const auto& round : rounds) {
    for (const RankRound& rr : round) {
      EXPECT_TRUE(rr.status.ok()) << rr.status.ToString();
      wrong += rr.wrong;
    }
  }
  // Without the trailer, empty messages cannot be corrupted: fewer.
  EXPECT_GT(log.corruptions(), 20u);
  EXPECT_EQ(wrong, log.corruptions());
}

// Runs one round under `plan` with a 200 ms timeout; returns the statuses
// and checks it ended within 3 s.
std::vector<RankRound> OneRound(Transport t, const FaultPlan& plan,
                                FaultLog& log, bool checksum = true) {
  Fabric fabric(t, milliseconds(200));
  std::vector<Endpoint> eps = Connect(fabric, plan, log, checksum);
  const auto start = Clock::now();
  auto rounds = RunRounds(eps, 1);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
  return rounds[0];
}

TEST_P(FaultTest, EveryDropEndsInADeadlineError) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    FaultPlan plan;
    plan.seed = seed;
    plan.With(FaultKind::kDrop, 0.05);
    FaultLog log;
    const std::vector<RankRound> rr = OneRound(GetParam(), plan, log);
    const uint64_t drops = Planned(plan, FaultKind::kDrop, 1);
    EXPECT_EQ(log.count(FaultKind::kDrop), drops);
    std::set<int> starved;
    for (const Message& m : AllMessages()) {
      if (plan.Decide(m.src, m.dst, m.task, 0) == FaultKind::kDrop) {
        starved.insert(m.dst);
      }
    }
    for (int r = 0; r < kWorld; ++r) {
      if (rr[r].status.ok()) {
        EXPECT_EQ(starved.count(r), 0u) << "rank " << r << " seed " << seed;
        EXPECT_EQ(rr[r].wrong, 0u);
        continue;
      }
      // The embedded receiver waits out the timeout; the p2p one learns
      // from its sender's message list that the message is not coming.
      const Status& st = rr[r].status;
      if (st.code() == StatusCode::kFailedPrecondition) {
        EXPECT_EQ(GetParam(), Transport::kP2p) << st.ToString();
        EXPECT_THAT(st.message(), HasSubstr("which did not send it"));
        continue;
      }
      EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st.ToString();
      EXPECT_THAT(st.message(), HasSubstr("0.2 s"));
    }
    if (drops == 0) continue;
    uint64_t failed = 0;
    for (int r = 0; r < kWorld; ++r) failed += !rr[r].status.ok();
    EXPECT_GE(failed, starved.size());
  }
}

TEST_P(FaultTest, DelaysWithinTheTimeoutAreHarmless) {
  FaultPlan plan;
  plan.seed = 5;
  plan.With(FaultKind::kDelay, 0.05);
  plan.delay = milliseconds(20);
  FaultLog log;
  Fabric fabric(GetParam(), milliseconds(1000));
  std::vector<Endpoint> eps = Connect(fabric, plan, log, true);
  const auto rounds = RunRounds(eps, 2);
  for (const auto& round : rounds) {
    for (const RankRound& rr : round) {
      EXPECT_TRUE(rr.status.ok()) << rr.status.ToString();
      EXPECT_EQ(rr.wrong, 0u);
    }
  }
  EXPECT_EQ(log.count(FaultKind::kDelay), Planned(plan, FaultKind::kDelay, 2));
  EXPECT_GT(log.count(FaultKind::kDelay), 0u);
}

TEST_P(FaultTest, ADelayPastTheTimeoutIsADeadlineError) {
  FaultPlan plan;
  plan.seed = 5;
  plan.With(FaultKind::kDelay, 0.05);
  plan.delay = milliseconds(500);
  FaultLog log;
  const std::vector<RankRound> rr = OneRound(GetParam(), plan, log);
  ASSERT_GT(log.count(FaultKind::kDelay), 0u);
  // The ranks that time out, and (embedded) receivers of the messages those
  // ranks withdrew when they failed, which fail at once.
  uint64_t deadline = 0;
  for (const RankRound& r : rr) {
    if (r.status.ok()) continue;
    if (r.status.code() == StatusCode::kAborted) {
      EXPECT_EQ(GetParam(), Transport::kEmbedded) << r.status.ToString();
      EXPECT_THAT(r.status.message(), HasSubstr("was withdrawn"));
      continue;
    }
    EXPECT_EQ(r.status.code(), StatusCode::kDeadlineExceeded)
        << r.status.ToString();
    ++deadline;
  }
  EXPECT_GT(deadline, 0u);
}

TEST_P(FaultTest, ARankDyingMidRefitFailsEveryPeerWithinTheTimeout) {
  FaultPlan plan;
  plan.dead_rank = 2;
  plan.die_at_run = 1;
  FaultLog log;
  Fabric fabric(GetParam(), milliseconds(200));
  std::vector<Endpoint> eps = Connect(fabric, plan, log, true);
  const auto start = Clock::now();
  const auto rounds = RunRounds(eps, 2);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
  EXPECT_EQ(log.deaths.load(), 1u);
  for (const RankRound& rr : rounds[0]) {
    EXPECT_TRUE(rr.status.ok()) << rr.status.ToString();
  }
  // Every rank exchanges messages with rank 2: all fail in round 1.
  for (int r = 0; r < kWorld; ++r) {
    const Status& st = rounds[1][r].status;
    if (r == 2) {
      EXPECT_EQ(st.code(), StatusCode::kIoError) << st.ToString();
      EXPECT_THAT(st.message(), HasSubstr("rank 2 died in run 1"));
      continue;
    }
    EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st.ToString();
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, FaultTest,
                         ::testing::Values(Transport::kEmbedded,
                                           Transport::kP2p),
                         [](const auto& info) {
                           return info.param == Transport::kEmbedded
                                      ? std::string("embedded")
                                      : std::string("p2p");
                         });

TEST(FaultPlan, IsAPureFunctionOfSeedAndMessage) {
  const FaultPlan plan = Corruptions(3);
  FaultPlan other = plan;
  EXPECT_EQ(plan.Decide(1, 2, 3, 4), other.Decide(1, 2, 3, 4));
  other.seed = 4;
  uint64_t same = 0, faults = 0;
  for (uint64_t t = 0; t < 2000; ++t) {
    same += plan.Decide(0, 1, t, 0) == other.Decide(0, 1, t, 0);
    faults += plan.Decide(0, 1, t, 0) != FaultKind::kNone;
  }
  EXPECT_LT(same, 2000u);
  // 20 % of messages get a fault: 400 expected.
  EXPECT_GT(faults, 300u);
  EXPECT_LT(faults, 500u);
}

}  // namespace
}  // namespace refit::exec
