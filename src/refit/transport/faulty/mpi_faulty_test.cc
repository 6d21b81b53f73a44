// Fault injection over the MPI copy service: run under `mpirun -np 4` (CTest
// transport.mpi_faulty); each process is one rank, wraps its MPI endpoint in
// a FaultyCopyService (under exec::ChecksumCopyService where checksums are
// on, as faulty_copy_service_test.cc does over threads) and exchanges the
// same messages. Each process logs only its own faults: the counts are
// summed over the world, and compared with what the seeded plan gives.
//
// What it shows: every corruption is caught with checksums on (exact count),
// goes unnoticed without them; every drop and a rank that dies mid-refit end
// in kDeadlineExceeded within the timeout on every rank that misses a
// message, no hang; a failed Run leaves the MPI endpoint unusable
// (kFailedPrecondition at once) and fresh endpoints on the same world run a
// clean round bit-exact.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "refit/transport/faulty/fault_test_util.h"
#include "refit/transport/mpi/mpi_copy_service.h"
#include "refit/transport/mpi/mpi_gtest.h"
#include "refit/transport/mpi/mpi_world.h"

namespace refit::exec {
namespace {

using fault_test::Endpoint;
using fault_test::Message;
using fault_test::RankRound;
using std::chrono::milliseconds;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

MpiWorld* g_world = nullptr;

int Rank() { return g_world->rank(); }
int World() { return g_world->size(); }

// The timeout of the failure cases, and the bound on a failed round's wall
// time: 3 timeouts and slack for a loaded machine (ranks oversubscribed).
constexpr milliseconds kShortTimeout(500);
constexpr milliseconds kRoundBound(3 * 500 + 1500);

// This rank's fresh MPI endpoint, wrapped.
Endpoint Connect(const FaultPlan& plan, FaultLog& log, bool checksum,
                 milliseconds timeout) {
  MpiCopyOptions options;
  options.timeout = timeout;
  auto inner = ConnectMpiCopyService(*g_world, options);
  EXPECT_TRUE(inner.ok()) << inner.status().ToString();
  return fault_test::Wrap(std::move(*inner), plan, log, checksum);
}

// The sum of `values` over the world (every rank passes as many).
std::vector<uint64_t> Sum(std::vector<uint64_t> values) {
  EXPECT_TRUE(g_world->AllReduceSum(values, "sum").ok());
  return values;
}
uint64_t Sum(uint64_t value) { return Sum(std::vector<uint64_t>{value})[0]; }

// The most any rank passes.
double Max(double value) {
  EXPECT_TRUE(g_world->AllReduceMax({&value, 1}, "max").ok());
  return value;
}

// Every rank's count of each fault kind, and deaths, summed.
struct Totals {
  std::vector<uint64_t> injected;
  uint64_t deaths = 0;
  uint64_t count(FaultKind k) const { return injected[static_cast<int>(k)]; }
  uint64_t corruptions() const {
    return count(FaultKind::kFlipBit) + count(FaultKind::kTruncate) +
           count(FaultKind::kDuplicate) + count(FaultKind::kReorder) +
           count(FaultKind::kReplay);
  }
};

Totals Gather(const FaultLog& log) {
  std::vector<uint64_t> v;
  for (int k = 0; k < kFaultKinds; ++k) v.push_back(log.injected[k].load());
  v.push_back(log.deaths.load());
  v = Sum(v);
  Totals t;
  t.deaths = v.back();
  v.pop_back();
  t.injected = v;
  return t;
}

// Every rank's status of one round, indexed by rank ("<code>:<message>").
std::vector<Status> AllStatuses(const Status& mine) {
  auto all = g_world->AllGather(
      std::to_string(static_cast<int>(mine.code())) + ":" + mine.message(),
      "statuses");
  EXPECT_TRUE(all.ok());
  std::vector<Status> out;
  for (const std::string& s : *all) {
    const size_t colon = s.find(':');
    out.emplace_back(static_cast<StatusCode>(std::stoi(s.substr(0, colon))),
                     s.substr(colon + 1));
  }
  return out;
}

// Runs `rounds` rounds on `ep` from a barrier; returns this rank's rounds
// and sets `seconds` to the slowest rank's wall time.
std::vector<RankRound> RunRounds(Endpoint& ep, int rounds,
                                 double* seconds = nullptr) {
  const std::vector<Message> all = fault_test::AllMessages(World());
  EXPECT_TRUE(g_world->Barrier("start").ok());
  const auto start = Clock::now();
  std::vector<RankRound> out;
  for (int round = 0; round < rounds; ++round) {
    out.push_back(fault_test::RunRank(ep, Rank(), round, all));
  }
  const double mine =
      std::chrono::duration<double>(Clock::now() - start).count();
  if (seconds) *seconds = Max(mine);
  return out;
}

// After a failed round: a failed MPI endpoint refuses more work at once
// (its contract), and fresh endpoints on the same world run a clean round
// bit-exact on every rank.
void ExpectRecovery(Endpoint& failed, const Status& failure) {
  if (!failure.ok() && failure.code() != StatusCode::kIoError) {
    const Status again = failed.service->Run();
    EXPECT_EQ(again.code(), StatusCode::kFailedPrecondition)
        << again.ToString();
    EXPECT_THAT(again.message(), HasSubstr("an earlier Run failed"));
  }
  failed.service.reset();
  FaultLog log;
  Endpoint fresh =
      Connect(FaultPlan{}, log, /*checksum=*/true, std::chrono::seconds(20));
  const RankRound rr = RunRounds(fresh, 1)[0];
  EXPECT_TRUE(rr.status.ok()) << rr.status.ToString();
  EXPECT_EQ(rr.wrong, 0u);
  EXPECT_EQ(Sum(!rr.status.ok() + rr.wrong), 0u) << "some rank's clean round";
  EXPECT_TRUE(fresh.service->Close().ok());
}

// Every injected corruption (flip, truncate, duplicate, reorder, replay of
// the previous round) is detected by the checksum layer, and nothing else:
// a corrupted run fails with kDataLoss (the MPI Run itself succeeded, so
// the endpoint stays usable for the next round) and every other message
// arrives bit-exact. On 4 ranks the plan and data are those of the thread
// tests: the same 55 corruptions.
TEST(MpiFaultTest, EveryCorruptionIsCaughtByChecksums) {
  constexpr int kRounds = 6;
  const FaultPlan plan = fault_test::Corruptions(11);
  FaultLog log;
  Endpoint ep = Connect(plan, log, true, std::chrono::seconds(20));
  const std::vector<RankRound> rounds = RunRounds(ep, kRounds);
  uint64_t failed = 0, wrong_ok = 0;
  for (const RankRound& rr : rounds) {
    if (rr.status.ok()) {
      wrong_ok += rr.wrong;
      continue;
    }
    ++failed;
    EXPECT_EQ(rr.status.code(), StatusCode::kDataLoss) << rr.status.ToString();
    EXPECT_THAT(rr.status.message(), HasSubstr("checksum: task "));
  }
  const Totals t = Gather(log);
  const uint64_t detected = Sum(ep.checksum->mismatches());
  EXPECT_EQ(Sum(wrong_ok), 0u);
  EXPECT_EQ(detected, t.corruptions());
  if (World() == 4) {
    EXPECT_EQ(t.corruptions(), 55u);
  }
  for (FaultKind k :
       {FaultKind::kFlipBit, FaultKind::kTruncate, FaultKind::kDuplicate,
        FaultKind::kReorder, FaultKind::kReplay}) {
    EXPECT_GT(t.count(k), 0u) << FaultKindName(k);
  }
  // With the trailer every message has bytes: every planned flip applies.
  EXPECT_EQ(t.count(FaultKind::kFlipBit),
            fault_test::Planned(plan, FaultKind::kFlipBit, kRounds, World()));
  const uint64_t failed_runs = Sum(failed);
  EXPECT_GT(failed_runs, 0u);
  if (Rank() == 0) {
    std::printf(
        "mpi: injected corruptions %llu (flip %llu, truncate %llu, duplicate "
        "%llu, reorder %llu, replay %llu), detected %llu, failed runs %llu "
        "of %d\n",
        (unsigned long long)t.corruptions(),
        (unsigned long long)t.count(FaultKind::kFlipBit),
        (unsigned long long)t.count(FaultKind::kTruncate),
        (unsigned long long)t.count(FaultKind::kDuplicate),
        (unsigned long long)t.count(FaultKind::kReorder),
        (unsigned long long)t.count(FaultKind::kReplay),
        (unsigned long long)detected, (unsigned long long)failed_runs,
        kRounds * World());
  }
  EXPECT_TRUE(ep.service->Close().ok());
}

// Without the checksum layer the same plan goes unnoticed: every run
// succeeds and the messages with wrong bytes are exactly the corruptions.
TEST(MpiFaultTest, CorruptionsGoUnnoticedWithoutChecksums) {
  const FaultPlan plan = fault_test::Corruptions(11);
  FaultLog log;
  Endpoint ep = Connect(plan, log, false, std::chrono::seconds(20));
  uint64_t wrong = 0, failed = 0;
  for (const RankRound& rr : RunRounds(ep, 6)) {
    EXPECT_TRUE(rr.status.ok()) << rr.status.ToString();
    failed += !rr.status.ok();
    wrong += rr.wrong;
  }
  const Totals t = Gather(log);
  EXPECT_EQ(Sum(failed), 0u);
  EXPECT_GT(t.corruptions(), 20u);
  EXPECT_EQ(Sum(wrong), t.corruptions());
  EXPECT_TRUE(ep.service->Close().ok());
}

// Every drop (5 % of messages, 4 seeds) ends in kDeadlineExceeded within
// the timeout on every rank that misses a message (and on ranks that wait
// for those), never a hang; the drop count equals the plan's. Then the
// failed endpoints refuse more work and fresh ones run a clean round.
TEST(MpiFaultTest, EveryDropEndsInADeadlineError) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    FaultPlan plan;
    plan.seed = seed;
    plan.With(FaultKind::kDrop, 0.05);
    FaultLog log;
    Endpoint ep = Connect(plan, log, true, kShortTimeout);
    double seconds = 0;
    const RankRound rr = RunRounds(ep, 1, &seconds)[0];
    EXPECT_LT(seconds, kRoundBound.count() / 1000.0) << "seed " << seed;
    const uint64_t drops =
        fault_test::Planned(plan, FaultKind::kDrop, 1, World());
    EXPECT_EQ(Gather(log).count(FaultKind::kDrop), drops);
    std::set<int> starved;
    for (const Message& m : fault_test::AllMessages(World())) {
      if (plan.Decide(m.src, m.dst, m.task, 0) == FaultKind::kDrop) {
        starved.insert(m.dst);
      }
    }
    if (rr.status.ok()) {
      EXPECT_EQ(starved.count(Rank()), 0u) << "seed " << seed;
      EXPECT_EQ(rr.wrong, 0u);
    } else {
      EXPECT_EQ(rr.status.code(), StatusCode::kDeadlineExceeded)
          << rr.status.ToString();
      EXPECT_THAT(rr.status.message(), HasSubstr("waited 0.5 s"));
    }
    const uint64_t failed = Sum(!rr.status.ok());
    EXPECT_GE(failed, starved.size()) << "seed " << seed;
    if (Rank() == 0) {
      std::printf(
          "mpi: seed %llu: %llu drops, %llu of %d ranks failed, %.2f s\n",
          (unsigned long long)seed, (unsigned long long)drops,
          (unsigned long long)failed, World(), seconds);
    }
    ExpectRecovery(ep, rr.status);
  }
}

// Delays well within the timeout are harmless: bit-exact, no error.
TEST(MpiFaultTest, DelaysWithinTheTimeoutAreHarmless) {
  FaultPlan plan;
  plan.seed = 5;
  plan.With(FaultKind::kDelay, 0.05);
  plan.delay = milliseconds(20);
  FaultLog log;
  Endpoint ep = Connect(plan, log, true, std::chrono::seconds(20));
  uint64_t bad = 0;
  for (const RankRound& rr : RunRounds(ep, 2)) {
    EXPECT_TRUE(rr.status.ok()) << rr.status.ToString();
    bad += !rr.status.ok() + rr.wrong;
  }
  EXPECT_EQ(Sum(bad), 0u);
  EXPECT_EQ(Gather(log).count(FaultKind::kDelay),
            fault_test::Planned(plan, FaultKind::kDelay, 2, World()));
  EXPECT_TRUE(ep.service->Close().ok());
}

// Rank 2 dies in its run 1 (the faulty layer's simulated death: it sends
// half its messages, receives none): it fails with kIoError, every other
// rank (each exchanges messages with rank 2) with kDeadlineExceeded, all
// within the bound. Then fresh endpoints run a clean round on all ranks.
TEST(MpiFaultTest, ARankDyingMidRefitFailsEveryPeerWithinTheTimeout) {
  FaultPlan plan;
  plan.dead_rank = 2;
  plan.die_at_run = 1;
  FaultLog log;
  Endpoint ep = Connect(plan, log, true, kShortTimeout);
  double seconds = 0;
  const std::vector<RankRound> rounds = RunRounds(ep, 2, &seconds);
  EXPECT_LT(seconds, kRoundBound.count() / 1000.0);
  EXPECT_EQ(Gather(log).deaths, 1u);
  EXPECT_TRUE(rounds[0].status.ok()) << rounds[0].status.ToString();
  const std::vector<Status> all = AllStatuses(rounds[1].status);
  for (int r = 0; r < World(); ++r) {
    if (r == 2) {
      EXPECT_EQ(all[r].code(), StatusCode::kIoError) << all[r].ToString();
      EXPECT_THAT(all[r].message(), HasSubstr("rank 2 died in run 1"));
      continue;
    }
    EXPECT_EQ(all[r].code(), StatusCode::kDeadlineExceeded)
        << "rank " << r << ": " << all[r].ToString();
  }
  if (Rank() == 0) {
    std::printf("mpi: rank 2 died in run 1; %.2f s\n", seconds);
    for (int r = 0; r < World(); ++r) {
      std::printf("mpi:   rank %d: %s\n", r, all[r].ToString().c_str());
    }
  }
  ExpectRecovery(ep, rounds[1].status);
}

}  // namespace
}  // namespace refit::exec

int main(int argc, char** argv) {
  using refit::exec::MpiWorld;
  ::testing::InitGoogleTest(&argc, argv);
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  auto world = MpiWorld::FromComm({MPI_Comm_c2f(MPI_COMM_WORLD)},
                                  std::chrono::seconds(30));
  if (!world.ok() || (*world)->size() < 3) {
    std::fprintf(stderr, "%s\n",
                 world.ok() ? "run under mpirun -np 4 (or 3)"
                            : world.status().ToString().c_str());
    return 2;
  }
  refit::exec::g_world = world->get();
  refit::exec::PrintFullOutputOnRankZero((*world)->rank());
  int failed = RUN_ALL_TESTS();
  // Every rank returns the same verdict, so CTest sees any rank's failure.
  uint64_t any = failed != 0;
  if (!(*world)->AllReduceSum({&any, 1}, "verdict").ok()) any = 1;
  const bool broken = (*world)->broken();
  world->reset();
  if (!broken) MPI_Finalize();
  return any != 0;
}
