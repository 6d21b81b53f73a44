// What one rank keeps between refits of one (model, topology, transform):
// its part of the reshard plan, its format transform and views of the
// caller's tensors, rebound and checked on every call.
#ifndef REFIT_EXEC_SESSION_RANK_SESSION_H_
#define REFIT_EXEC_SESSION_RANK_SESSION_H_

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "refit/core/format/dst_format.h"
#include "refit/core/planner.h"
#include "refit/exec/copy_service.h"
#include "refit/exec/dst_tensors.h"
#include "refit/exec/executor.h"
#include "refit/exec/format_transform.h"
#include "refit/exec/session/shared_shards.h"
#include "refit/exec/session/tensor_binding.h"
#include "refit/swap.h"

namespace refit::exec {

/// The inputs every rank of the group agreed on, and the plan built from
/// them (the whole plan when the ranks share a process, else this rank's
/// part: BuildRankReshardPlan).
struct SessionPlan {
  std::shared_ptr<const ModelSpec> spec;  ///< source dtypes
  RefitTopology topo;
  FormatPlan formats;
  ModelSpec dst_spec;  ///< DestinationSpec(spec, formats)
  std::shared_ptr<const ReshardPlan> plan;
  /// Destination shards the plan leaves out because another destination of
  /// the same refit on their rank receives the same bytes (SharedShards);
  /// RankSessions copies them after the moves.
  std::vector<CopiedShard> copied;
  /// Parameters planned when this plan was built: all of them, or only the
  /// routed experts an expert placement change moved (RebuildReshardPlan).
  uint64_t params_replanned = 0;
};

class RankSession {
 public:
  /// Rank `rank` (global) of `plan`.
  RankSession(std::shared_ptr<const SessionPlan> plan, int rank);
  RankSession(const RankSession&) = delete;
  RankSession& operator=(const RankSession&) = delete;

  /// Checks `src` and `dst` against this rank's shards (each present exactly
  /// when the rank holds that side; source tensors in memory the transport
  /// reads, destination tensors in memory it writes) and points the views at
  /// them.
  /// A rank that converts formats converts on the memory its tensors are in
  /// (all of one kind: host, or CUDA with refit::cuda's device kernels).
  /// Errors: kInvalidArgument naming the rank and tensor (SideBinding::Bind),
  /// or the side the rank was given without holding it (or not given);
  /// kUnimplemented for a converting rank whose tensors mix memory kinds
  /// (both named) or CUDA tensors in a build without CUDA.
  Status Bind(const ShardedModel* src, const ShardedModel* dst,
              const TransportCapabilities& transport);

  /// This rank's share of the plan, for ExecuteRankPlans with the sessions
  /// of the refit's other destinations.
  RankWork Work() {
    return {plan_->plan.get(), &rank_plan_, &buffers_, transform_.get()};
  }
  /// The rank's format conversions start after the work queued so far on
  /// the caller's CUDA stream (FormatTransform::OrderAfter); nothing when
  /// the rank converts nothing.
  Status OrderAfter(uintptr_t cuda_stream) {
    return transform_ ? transform_->OrderAfter(cuda_stream) : OkStatus();
  }
  const SessionPlan& plan() const { return *plan_; }
  /// Byte and message counts of one refit of this plan on this rank.
  const SwapReport& counts() const { return counts_; }
  /// Staging the transform holds, bytes (0 without one).
  uint64_t staging_bytes() const;
  /// The bound tensors held a CUDA tensor at the last Bind.
  bool binds_cuda() const { return binds_cuda_; }
  /// The bound destination tensors of parameter `p`: its data shard and its
  /// scale tensor (empty when it has none); empty when not bound.
  std::span<std::byte> DstData(uint32_t p) const;
  std::span<std::byte> DstScales(uint32_t p) const;
  /// The destination shard geometry of parameter `p` on this rank (one it
  /// holds).
  const ShardGeometry& DstGeometry(uint32_t p) const {
    return dst_->data().geometry(p);
  }

  /// What message (src, dst, task) of the plan carries, for error messages:
  /// "parameters A, B, C and 4 more" (destination names); empty when the
  /// plan holds no such message.
  std::string DescribeMessage(int src, int dst, uint64_t task) const;

 private:
  void CountBytes();

  std::shared_ptr<const SessionPlan> plan_;
  int rank_;
  int src_rank_ = -1;        // in the source layout; -1 when none
  bool binds_cuda_ = false;  // the last Bind saw a CUDA tensor
  int dst_rank_ = -1;
  RankPlan rank_plan_;
  std::unique_ptr<ShardArena> src_;           // views; SourceScales points here
  std::unique_ptr<SourceScales> src_scales_;  // kept block-FP8 sources
  std::unique_ptr<DstTensors> dst_;           // the transform points here
  std::optional<SideBinding> src_binding_;
  std::optional<SideBinding> dst_binding_;
  std::unique_ptr<FormatTransform> transform_;
  RankBuffers buffers_;
  SwapReport counts_;  // bytes and messages of one refit
};

}  // namespace refit::exec

#endif  // REFIT_EXEC_SESSION_RANK_SESSION_H_
