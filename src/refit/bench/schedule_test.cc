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

// Node fan-out: ranks 0 and 1 (node 0) send 100 + 50 MB to ranks 2 and 3
// (node 1), 3 sends 2 a 1 MB op, then 2 and 3 forward what they received to
// each other. The forwards start once every op has landed: the modeled time
// and lower bound are those of the two phases added.
TEST(ScheduleTest, ForwardsRunAfterTheOps) {
  ReshardPlan plan =
      HandPlan(4, {{0, 2, 100000000}, {1, 3, 50000000}, {3, 2, 1000000}});
  plan.forwards.push_back({2, 3, 16 + 2 * 4 + 3, 100000000, {}});
  plan.forwards.push_back({3, 2, 16 + 3 * 4 + 2, 50000000, {}});
  plan.bytes_forwarded = 150000000;
  const ClusterModel c{.gpus_per_node = 2};
  const ScheduleOptions o;  // 32 MiB chunks: 100 MB in 3, 50 MB in 2
  const ScheduleModel ops = BuildSchedule(plan, c, o).model;
  const ScheduleModel fwd = BuildSchedule(ForwardPhase(plan), c, o).model;
  const ScheduleModel m = ModelPhasedSchedule(plan, c, o);
  EXPECT_DOUBLE_EQ(ops.t_lb_ms, 2.0);  // 100 MB at 50 GB/s
  EXPECT_NEAR(ops.makespan_ms, 2.0 + 3 * 0.010, 1e-9);
  EXPECT_DOUBLE_EQ(fwd.t_lb_ms, 100e6 / 450e6);  // 100 MB on NVLink
  EXPECT_NEAR(fwd.makespan_ms, 100e6 / 450e6 + 3 * 0.010, 1e-9);
  EXPECT_DOUBLE_EQ(m.t_lb_ms, ops.t_lb_ms + fwd.t_lb_ms);
  EXPECT_DOUBLE_EQ(m.makespan_ms, ops.makespan_ms + fwd.makespan_ms);
  EXPECT_NEAR(m.makespan_ms, 2.06 + 100e6 / 450e6, 1e-9);
  EXPECT_DOUBLE_EQ(m.efficiency, m.t_lb_ms / m.makespan_ms);
  EXPECT_EQ(ops.chunks, 6u);  // 3 + 2 + 1
  EXPECT_EQ(fwd.chunks, 5u);
  EXPECT_EQ(m.chunks, 11u);
  EXPECT_EQ(m.staging_bytes_max,
            std::max(ops.staging_bytes_max, fwd.staging_bytes_max));
  // The plain schedule leaves the forwards out.
  EXPECT_DOUBLE_EQ(BuildSchedule(plan, c, o).model.makespan_ms,
                   ops.makespan_ms);

  const TrafficStats t = ComputeTraffic(plan, 2);
  EXPECT_EQ(t.total_bytes, 301000000u);
  EXPECT_EQ(t.moved_bytes, 301000000u);
  EXPECT_EQ(t.internode_bytes, 150000000u);
  EXPECT_EQ(t.forwarded_bytes, 150000000u);
  EXPECT_EQ(t.max_send_bytes, 100000000u);  // rank 0, and rank 2 forwarding
  EXPECT_EQ(t.max_recv_bytes, 151000000u);  // rank 2: 100 + 1 + 50 MB
  EXPECT_EQ(t.messages, 5u);
  EXPECT_EQ(t.max_rank_messages, 4u);
  EXPECT_EQ(t.pairs, 4u);  // 3 -> 2 carries an op and a forward
}

// Without forwards the two-phase model is BuildSchedule's.
TEST(ScheduleTest, PhasedScheduleOfAPlainPlanIsItsSchedule) {
  const ReshardPlan plan = HandPlan(16, {{0, 8, 100000000}, {1, 9, 7}});
  const ScheduleModel a = BuildSchedule(plan, ClusterModel{}, {}).model;
  const ScheduleModel b = ModelPhasedSchedule(plan, ClusterModel{}, {});
  EXPECT_DOUBLE_EQ(a.makespan_ms, b.makespan_ms);
  EXPECT_DOUBLE_EQ(a.t_lb_ms, b.t_lb_ms);
  EXPECT_EQ(a.chunks, b.chunks);
  EXPECT_TRUE(ForwardPhase(plan).ops.empty());
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
