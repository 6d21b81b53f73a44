// Traffic figures of a reshard plan: who sends how much to whom.
#ifndef REFIT_BENCH_TRAFFIC_H_
#define REFIT_BENCH_TRAFFIC_H_

#include <cstdint>

#include "refit/core/planner.h"

namespace refit {

struct TrafficStats {
  uint64_t total_bytes = 0;  ///< destination bytes written (remote + local)
  uint64_t moved_bytes = 0;  ///< bytes that change rank
  uint64_t internode_bytes =
      0;  ///< bytes whose sender and receiver sit on different nodes
  uint64_t max_send_bytes = 0;  ///< most bytes one rank sends
  uint64_t max_recv_bytes = 0;  ///< most bytes one rank receives
  uint64_t messages = 0;  ///< remote transfer ops (one per (src, dst) pair)
  uint64_t max_rank_messages = 0;  ///< most messages one rank sends or receives
  uint64_t pairs =
      0;  ///< distinct (src, dst) rank pairs with traffic, src != dst
};

/// Figures of `plan`, with ranks placed `gpus_per_node` to a node in rank
/// order (rank r on node r / gpus_per_node).
TrafficStats ComputeTraffic(const ReshardPlan& plan, int gpus_per_node);

}  // namespace refit

#endif  // REFIT_BENCH_TRAFFIC_H_
