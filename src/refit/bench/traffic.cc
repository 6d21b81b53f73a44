#include "refit/bench/traffic.h"

#include <algorithm>
#include <vector>

namespace refit {

TrafficStats ComputeTraffic(const ReshardPlan& plan, int gpus_per_node) {
  TrafficStats t;
  const int world = plan.world_size;
  std::vector<uint64_t> sent(world, 0), received(world, 0), msgs(world, 0);
  for (const TransferOp& op : plan.ops) {
    t.total_bytes += op.bytes;
    if (op.src_rank == op.dst_rank) continue;
    t.moved_bytes += op.bytes;
    if (op.src_rank / gpus_per_node != op.dst_rank / gpus_per_node) {
      t.internode_bytes += op.bytes;
    }
    sent[op.src_rank] += op.bytes;
    received[op.dst_rank] += op.bytes;
    ++msgs[op.src_rank];
    ++msgs[op.dst_rank];
    ++t.messages;
  }
  t.pairs = t.messages;  // the planner coalesces each pair into one op
  for (int r = 0; r < world; ++r) {
    t.max_send_bytes = std::max(t.max_send_bytes, sent[r]);
    t.max_recv_bytes = std::max(t.max_recv_bytes, received[r]);
    t.max_rank_messages = std::max(t.max_rank_messages, msgs[r]);
  }
  return t;
}

}  // namespace refit
