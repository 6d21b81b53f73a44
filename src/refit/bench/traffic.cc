#include "refit/bench/traffic.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace refit {

namespace {

// Per-rank tallies while walking the ops and forwards of a plan.
struct RankTally {
  std::vector<uint64_t> sent, received, msgs;
  std::vector<std::pair<int, int>> pairs;  // (src, dst) of remote messages

  explicit RankTally(int world)
      : sent(world, 0), received(world, 0), msgs(world, 0) {}

  void Add(const TransferOp& op) {
    sent[op.src_rank] += op.bytes;
    received[op.dst_rank] += op.bytes;
    ++msgs[op.src_rank];
    ++msgs[op.dst_rank];
    pairs.emplace_back(op.src_rank, op.dst_rank);
  }
};

}  // namespace

TrafficStats ComputeTraffic(const ReshardPlan& plan, int gpus_per_node) {
  TrafficStats t;
  RankTally tally(plan.world_size);
  for (const TransferOp& op : plan.ops) {
    t.total_bytes += op.bytes;
    if (op.src_rank == op.dst_rank) continue;
    t.moved_bytes += op.bytes;
    if (op.src_rank / gpus_per_node != op.dst_rank / gpus_per_node) {
      t.internode_bytes += op.bytes;
    }
    tally.Add(op);
  }
  for (const TransferOp& op : plan.forwards) {
    t.total_bytes += op.bytes;
    t.moved_bytes += op.bytes;
    t.forwarded_bytes += op.bytes;
    tally.Add(op);
  }
  t.messages = tally.pairs.size();
  // Each phase coalesces a pair into one op; a pair may carry both phases.
  std::sort(tally.pairs.begin(), tally.pairs.end());
  t.pairs =
      std::unique(tally.pairs.begin(), tally.pairs.end()) - tally.pairs.begin();
  for (int r = 0; r < plan.world_size; ++r) {
    t.max_send_bytes = std::max(t.max_send_bytes, tally.sent[r]);
    t.max_recv_bytes = std::max(t.max_recv_bytes, tally.received[r]);
    t.max_rank_messages = std::max(t.max_rank_messages, tally.msgs[r]);
  }
  return t;
}

}  // namespace refit
