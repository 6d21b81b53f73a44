#include "refit/bench/schedule.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "refit/bench/traffic.h"

namespace refit {
namespace {

ReshardPlan HandPlan(int world,
                     std::vector<std::tuple<int, int, uint64_t>> ops) {
  ReshardPlan plan;
  plan.world_size = world;
  std::sort(ops.begin(), ops.end());
  for (const auto& [s, d, bytes] : ops) {
    plan.ops.push_back({s, d, static_cast<uint64_t>(s) * world + d, bytes, {}});
    (s == d ? plan.bytes_local : plan.bytes_remote) += bytes;
  }
  return plan;
}

// Two ranks on one node swap 450 MB: 1 ms at 450 GB/s per direction.
TEST(ScheduleTest, LowerBoundAndMakespanOfASwap) {
  const ReshardPlan plan = HandPlan(2, {{0, 1, 450000000}, {1, 0, 450000000}});
  ScheduleOptions o;  // 32 MiB chunks: 14 per message
  const TransferSchedule s = BuildSchedule(plan, ClusterModel{}, o);
  EXPECT_DOUBLE_EQ(s.model.t_lb_ms, 1.0);
  EXPECT_EQ(s.model.chunks, 28u);
  EXPECT_NEAR(s.model.makespan_ms, 1.0 + 14 * 0.010, 1e-9);
  EXPECT_NEAR(s.model.efficiency, 1.0 / 1.14, 1e-9);
}

// Inter-node traffic goes through the 50 GB/s network port.
TEST(ScheduleTest, NetworkPortBoundsInterNodeTraffic) {
  const ReshardPlan plan = HandPlan(16, {{0, 8, 100000000}, {1, 8, 100000000}});
  const TransferSchedule s = BuildSchedule(plan, ClusterModel{}, {});
  EXPECT_DOUBLE_EQ(s.model.t_lb_ms, 4.0);  // 200 MB into rank 8 at 50 GB/s
  EXPECT_GE(s.model.makespan_ms, 4.0);
  const TrafficStats t = ComputeTraffic(plan, 8);
  EXPECT_EQ(t.internode_bytes, 200000000u);
  EXPECT_EQ(t.max_recv_bytes, 200000000u);
  EXPECT_EQ(t.pairs, 2u);
}

// Random plans: every remote byte is scheduled exactly once, in order within
// a message; staging stays within the bound; efficiency in (0, 1].
TEST(ScheduleTest, RandomPlansAreCoveredAndBounded) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    const int world = 2 + rng() % 30;
    std::map<std::pair<int, int>, uint64_t> traffic;
    for (int i = 0; i < 3 * world; ++i) {
      traffic[{static_cast<int>(rng() % world),
               static_cast<int>(rng() % world)}] = 1 + rng() % (200u << 20);
    }
    std::vector<std::tuple<int, int, uint64_t>> ops;
    for (const auto& [k, b] : traffic) ops.emplace_back(k.first, k.second, b);
    const ReshardPlan plan = HandPlan(world, ops);
    ScheduleOptions o;
    o.max_inflight = 1 + rng() % 4;
    o.max_staging_bytes = (16u + rng() % 256) << 20;
    const TransferSchedule s = BuildSchedule(plan, ClusterModel{}, o);
    std::vector<uint64_t> next(plan.ops.size(), 0);
    for (int r = 0; r < world; ++r) {
      for (const Chunk& c : s.sends[r]) {
        ASSERT_EQ(plan.ops[c.op].src_rank, r);
        ASSERT_EQ(c.offset, next[c.op]);
        ASSERT_LE(c.bytes, o.chunk_bytes());
        next[c.op] += c.bytes;
      }
    }
    for (size_t i = 0; i < plan.ops.size(); ++i) {
      const TransferOp& op = plan.ops[i];
      EXPECT_EQ(next[i], op.src_rank == op.dst_rank ? 0 : op.bytes);
    }
    EXPECT_LE(s.model.staging_bytes_max, o.max_staging_bytes);
    EXPECT_GT(s.model.efficiency, 0.0);
    EXPECT_LE(s.model.efficiency, 1.0 + 1e-12);
  }
}

}  // namespace
}  // namespace refit
