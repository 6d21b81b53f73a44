// The reshard planner: who sends which bytes of which tensor to whom.
//
// Pure and deterministic: every rank calls BuildReshardPlan with the same
// inputs and gets the same plan (Megatron builds it the same way, from one
// metadata all-gather and a deterministic replay: planner.py
// build_plan_from_rosters). Algorithm (resharding_algorithms.md §0):
//  1. for every parameter, in spec order, and every destination rank holding
//     it, in rank order: intersect each destination segment with the source
//     segments of every source shard coordinate;
//  2. for each piece choose one source replica: the destination rank itself
//     if it holds one (local copy), else the candidate that has sent the
//     fewest bytes so far, counted in steps of min(8 MiB, model bytes /
//     (16 x world)) so that one sender serves runs of consecutive pieces,
//     ties to the lowest rank;
//  3. coalesce all pieces between one (src, dst) pair into one transfer op;
//  4. check every destination byte is written exactly once.
// With node fan-out (PlanOptions::fanout_gpus_per_node > 0) replicas prefer
// senders on the receiver's node, and where several destination ranks of one
// node hold the same shard (data-parallel replicas, tensors replicated over
// TP such as norms, the router or MLA's down projections, experts replicated
// over EDP) only one of them, the leader, receives the bytes no rank of the
// node holds; it forwards them to the others over the node's links once its
// own receives are done (ReshardPlan::forwards). No published refit system
// does this (users_and_engines.md); it divides the network bytes of
// replicated shards by their replicas per node.
#ifndef REFIT_CORE_PLANNER_H_
#define REFIT_CORE_PLANNER_H_

#include <cstdint>
#include <vector>

#include "refit/core/layout.h"
#include "refit/core/model_spec.h"
#include "refit/core/status.h"

namespace refit {

/// Where the source and destination layouts sit in one world of ranks.
/// Collocated: both span ranks [0, world) (offsets 0). Non-collocated:
/// source ranks [src_rank_offset, +src.world_size()) and destination ranks
/// [dst_rank_offset, +dst.world_size()), disjoint; other ranks are idle.
struct RefitTopology {
  Layout src;
  Layout dst;
  int src_rank_offset = 0;
  int dst_rank_offset = 0;
  int world_size = 0;  ///< ranks in the refit group

  bool collocated() const;
};

/// Builds a topology and checks it: collocated needs equal world sizes;
/// otherwise the rank ranges must be disjoint and inside world_size.
/// Errors: kInvalidArgument naming the offending size or offset.
Result<RefitTopology> MakeTopology(const Layout& src, const Layout& dst,
                                   int src_rank_offset, int dst_rank_offset,
                                   int world_size);

/// One piece of one tensor: `nruns` runs of `run_bytes` bytes, the i-th at
/// src_offset + i*src_stride of the source shard of `src_param` and at
/// dst_offset + i*dst_stride of the destination shard of `dst_param`. Offsets
/// are bytes into the local (row-major) tensors.
struct Piece {
  uint32_t src_param = 0;
  uint32_t dst_param = 0;
  uint64_t src_offset = 0;
  uint64_t dst_offset = 0;
  uint64_t run_bytes = 0;
  uint64_t nruns = 1;
  uint64_t src_stride = 0;
  uint64_t dst_stride = 0;

  uint64_t bytes() const { return run_bytes * nruns; }
};

/// All pieces one source rank sends one destination rank (global ranks).
/// src_rank == dst_rank is a local copy. task_id = src_rank * world_size +
/// dst_rank: sender and receiver agree on it without talking, also when each
/// built only its own part of the plan.
struct TransferOp {
  int src_rank = 0;
  int dst_rank = 0;
  uint64_t task_id = 0;
  uint64_t bytes = 0;
  std::vector<Piece> pieces;
};

/// The whole plan, ops sorted by (src_rank, dst_rank).
struct ReshardPlan {
  int world_size = 0;
  std::vector<TransferOp> ops;
  /// Node fan-out only: the second phase, run after every op of `ops` has
  /// landed. A leader rank forwards bytes of its destination shards to ranks
  /// of its node holding the same shards: in each piece src_param ==
  /// dst_param (the destination parameter), src_offset == dst_offset and
  /// src_stride == dst_stride, all into the destination shard as laid out in
  /// the destination format's source dtype. task_id = world_size^2 +
  /// src_rank * world_size + dst_rank. Sorted by (src_rank, dst_rank).
  std::vector<TransferOp> forwards;
  uint64_t bytes_remote = 0;     ///< bytes that change rank in `ops`
  uint64_t bytes_local = 0;      ///< bytes copied within a rank
  uint64_t bytes_forwarded = 0;  ///< bytes of `forwards`
  uint64_t messages = 0;         ///< remote ops
  uint64_t dst_tensors = 0;      ///< (destination rank, tensor) shards written
  /// Some rank of the world forwards (also in a rank's own plan whose
  /// `forwards` is empty): every rank runs the second phase.
  bool forward_phase = false;
  /// Bytes each rank (global) sends to other ranks in the whole plan (also
  /// in a rank's own plan: every choice is replayed): the loads a rebuild
  /// (RebuildReshardPlan) balances new pieces against.
  std::vector<uint64_t> send_load;
};

/// One rank's share of the plan: indices into ReshardPlan::ops, and into
/// ReshardPlan::forwards for the forward_* lists.
struct RankPlan {
  int rank = 0;
  std::vector<uint32_t> sends;
  std::vector<uint32_t> recvs;
  std::vector<uint32_t> local_copies;
  std::vector<uint32_t> forward_sends;
  std::vector<uint32_t> forward_recvs;
};

/// Optional changes to what destination ranks receive.
struct PlanOptions {
  /// Per parameter (empty, or one entry per spec parameter): when > 1, every
  /// destination shard of the parameter receives its segments widened to whole
  /// blocks of this many elements along the split dimension
  /// (ExpandToBlocks), and piece dst offsets address that widened receive
  /// buffer, not the shard. Used when a destination quantises 128-row blocks
  /// that its TP cut only partly holds.
  std::vector<int64_t> dst_block;
  /// Node fan-out: > 0 places ranks this many to a node in rank order (rank
  /// r on node r / fanout_gpus_per_node, as bench's ClusterModel) and plans
  /// the forwards described at the top of this file; 0: off.
  int fanout_gpus_per_node = 0;
  /// Per parameter (empty, or one entry per spec parameter): 1 keeps the
  /// parameter out of the fan-out (every holder receives its own bytes).
  /// Set for destinations quantised on receipt, whose final bytes cannot be
  /// cut along the plan's pieces.
  std::vector<uint8_t> no_fanout;
  /// Destination shards the plan leaves out, as sorted keys dst_rank (global)
  /// * params + param: another destination model of the same refit holds the
  /// same bytes on that rank and receives them, and the session copies them
  /// over (a refit into several destination layouts at once, include/refit/
  /// swap.h DestinationModel). Not with fan-out.
  std::vector<uint64_t> skip_dst;
};

/// Builds the plan. Errors: kInternal if a destination shard would not be
/// covered exactly once (a broken invariant, reported with rank and tensor);
/// kInvalidArgument when options.dst_block or options.no_fanout has the
/// wrong size, fanout_gpus_per_node is negative, or skip_dst is set with
/// fan-out.
Result<ReshardPlan> BuildReshardPlan(const ModelSpec& spec,
                                     const RefitTopology& topo,
                                     const PlanOptions& options = {});

/// The part of the plan rank `rank` (global) takes part in, built by that rank
/// alone: every replica choice is replayed (it depends on the whole picture)
/// but only this rank's ops are kept. They equal those ops of
/// BuildReshardPlan, pieces and task ids included; bytes_remote, bytes_local
/// and messages count these ops only. Errors: as BuildReshardPlan.
Result<ReshardPlan> BuildRankReshardPlan(const ModelSpec& spec,
                                         const RefitTopology& topo, int rank,
                                         const PlanOptions& options = {});

/// What RebuildReshardPlan did.
struct RebuildStats {
  uint64_t params_replanned = 0;  ///< parameters planned again
  uint64_t params_kept = 0;       ///< parameters whose pieces were kept
};

/// The plan of `topo` made from `previous`, the plan (whole, or rank
/// `rank`'s own when rank >= 0) of `previous_topo`, which differs from
/// `topo` at most in the destination's expert placement (vLLM EPLB's
/// physical_to_logical_map changing between refits,
/// ParallelConfig::expert_placement). The pieces of every parameter whose
/// destination holders stay are kept as they are; only the routed experts
/// whose EP ranks changed are planned again, their senders balanced against
/// previous.send_load (which keeps counting the moved experts' old pieces:
/// a rebuild balances a little worse than a fresh build). Deterministic:
/// every rank rebuilding from the same previous plan gets the same plan, and
/// a rank's own rebuild holds exactly its ops of the whole rebuild. Pieces
/// of an op are in parameter order, task ids as BuildReshardPlan's.
/// Errors: kInvalidArgument when the topologies differ in anything but the
/// destination placement, with fan-out or skip_dst, or when `previous` has
/// no send_load of this world; BuildReshardPlan's.
Result<ReshardPlan> RebuildReshardPlan(const ModelSpec& spec,
                                       const RefitTopology& topo, int rank,
                                       const RefitTopology& previous_topo,
                                       const ReshardPlan& previous,
                                       const PlanOptions& options = {},
                                       RebuildStats* stats = nullptr);

/// The ops rank `rank` (global) sends, receives or copies locally.
RankPlan ExtractRankPlan(const ReshardPlan& plan, int rank);

}  // namespace refit

#endif  // REFIT_CORE_PLANNER_H_
