// Traffic figures of a reshard plan: who sends how much to whom.
#ifndef REFIT_BENCH_TRAFFIC_H_
#define REFIT_BENCH_TRAFFIC_H_

#include <cstdint>

#include "refit/core/planner.h"

namespace refit {

/// Byte and message counts of a plan, both phases together: the ops and, with
/// node fan-out, the forwards (ReshardPlan::forwards). A forward is a remote
/// message inside one node: it counts in moved_bytes, forwarded_bytes, the
/// per-rank maxima, messages and pairs, never in internode_bytes.
struct TrafficStats {
  /// Destination bytes written (remote + local + forwarded).
  uint64_t total_bytes = 0;
  uint64_t moved_bytes = 0;  ///< bytes that change rank, forwards included
  /// Bytes whose sender and receiver sit on different nodes.
  uint64_t internode_bytes = 0;
  /// Bytes of the forwards (the second phase; all inside a node).
  uint64_t forwarded_bytes = 0;
  /// Most bytes one rank sends, ops and forwards together.
  uint64_t max_send_bytes = 0;
  /// Most bytes one rank receives, ops and forwards together.
  uint64_t max_recv_bytes = 0;
  /// Remote messages: remote ops plus forwards (each one (src, dst) pair of
  /// its phase).
  uint64_t messages = 0;
  uint64_t max_rank_messages = 0;  ///< most messages one rank sends or receives
  /// Distinct (src, dst) rank pairs with traffic in either phase, src != dst.
  uint64_t pairs = 0;
};

/// Figures of `plan`, with ranks placed `gpus_per_node` to a node in rank
/// order (rank r on node r / gpus_per_node).
TrafficStats ComputeTraffic(const ReshardPlan& plan, int gpus_per_node);

}  // namespace refit

#endif  // REFIT_BENCH_TRAFFIC_H_
