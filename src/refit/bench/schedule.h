// The executor's transfer schedule, and a model of its time on a cluster.
//
// Messages larger than the chunk size are split so no transfer needs more
// staging than the bound. Chunks are ordered by a greedy simulation of the
// cluster (largest remaining work first, resharding_algorithms.md §5); ties
// follow shifted-permutation rounds, rank s starting at its (s mod n)-th
// destination (NCCL's p2pSchedule). Model: every GPU has an NVLink port
// (intra-node) and a network port (inter-node), each full duplex. A chunk
// occupies its sender's out-port and its receiver's in-port of the matching
// kind for latency + bytes / bandwidth; a rank has at most `max_inflight`
// chunks outstanding per direction. The lower bound T_LB is max over ports of
// bytes through the port / bandwidth (resharding_algorithms.md §0).
// A node fan-out plan runs in two phases (ReshardPlan::forwards start once
// every op has landed), so its time is the sum of the phases' times
// (ModelPhasedSchedule).
#ifndef REFIT_BENCH_SCHEDULE_H_
#define REFIT_BENCH_SCHEDULE_H_

#include <cstdint>
#include <vector>

#include "refit/core/planner.h"
#include "refit/core/staging.h"

namespace refit {

/// The cluster a plan is judged on. Bandwidths in GB/s (1e9 B/s) per GPU per
/// direction; latency in microseconds per message.
struct ClusterModel {
  int gpus_per_node = 8;
  double nvlink_gbps = 450;
  double network_gbps = 50;
  double latency_us = 10;
  /// HBM bandwidth of one GPU, GB/s: H100 SXM5's 3.35 TB/s (NVIDIA H100
  /// datasheet). Used for the engine re-pack a receiver skips when refit
  /// writes engine layouts directly (BenchOptions::engine_repack).
  double hbm_gbps = 3350;
};

/// One chunk of a remote op: bytes [offset, offset + bytes) of its message.
struct Chunk {
  uint32_t op = 0;  ///< index into ReshardPlan::ops
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

struct ScheduleModel {
  double t_lb_ms = 0;      ///< lower bound: busiest port's bytes / bandwidth
  double makespan_ms = 0;  ///< modeled time of the executor's order
  double efficiency = 0;   ///< t_lb_ms / makespan_ms (1 when nothing moves)
  uint64_t chunks = 0;     ///< transfers after chunking
  uint64_t staging_bytes_max = 0;  ///< most staging one rank holds at once
};

/// The schedule the executor follows and its modeled time.
struct TransferSchedule {
  std::vector<std::vector<Chunk>> sends;  ///< per rank, in issue order
  ScheduleModel model;
};

/// Builds the schedule by event-driven greedy matching on the cluster model:
/// whenever ports are free, chunks start on free (sender, receiver) pairs,
/// the pair with the most remaining work on its two ports first. Deterministic.
/// Schedules plan.ops only (the first phase); plan.forwards are left out
/// (ModelPhasedSchedule models both phases).
TransferSchedule BuildSchedule(const ReshardPlan& plan,
                               const ClusterModel& cluster,
                               const ScheduleOptions& options);

/// The second phase of a node fan-out plan as a plan of its own: `ops` are
/// plan.forwards without their pieces (the schedule needs only ranks and
/// bytes); bytes_remote and messages are theirs; no forwards.
ReshardPlan ForwardPhase(const ReshardPlan& plan);

/// The modeled time of the whole plan as the executor runs it: the ops
/// (BuildSchedule of `plan`), then, once every op has landed on every rank,
/// the forwards (BuildSchedule of ForwardPhase). makespan_ms, t_lb_ms and
/// chunks are the sums over the two phases (no phase overlaps the other, and
/// the barrier between them is not charged); staging_bytes_max the larger
/// phase's; efficiency t_lb_ms / makespan_ms. Without forwards it is
/// BuildSchedule's model.
ScheduleModel ModelPhasedSchedule(const ReshardPlan& plan,
                                  const ClusterModel& cluster,
                                  const ScheduleOptions& options);

}  // namespace refit

#endif  // REFIT_BENCH_SCHEDULE_H_
