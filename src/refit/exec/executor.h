// Turns one rank's share of a reshard plan into copies and copy-service calls.
#ifndef REFIT_EXEC_EXECUTOR_H_
#define REFIT_EXEC_EXECUTOR_H_

#include <cstddef>
#include <span>
#include <vector>

#include "refit/core/planner.h"
#include "refit/exec/copy_service.h"
#include "refit/exec/transform.h"

namespace refit::exec {

/// The tensors of one rank, indexed by parameter: its source shards (what the
/// trainer holds) and destination shards (what inference wants); nullptr where
/// the rank holds none. Collocated ranks have both; others one side or none.
struct RankBuffers {
  std::vector<const std::byte*> src;
  std::vector<std::byte*> dst;
};

/// Wall times of one ExecuteRankPlan's phases on its rank, in ms.
struct ExecuteTimes {
  double pack_ms = 0;    ///< send blocks (send-side conversions) submitted
  double wire_ms = 0;    ///< the copy service's Run
  double unpack_ms = 0;  ///< receive-side conversions, local copies, Finish
};

/// Executes rank `rank_plan.rank`'s ops: submits sends and receives to
/// `service` (receivers write into their destination tensors), runs them,
/// then does the local copies directly. With a `transform`, pieces of the
/// parameters it claims (ShouldTransform) go through its PrepareSend /
/// PrepareRecv / FinalizeRecv (local copies too), and Finish runs after them.
/// A plan with a forward phase (node fan-out) then runs its forwards with a
/// second Run of `service`: leaders send from their destination tensors
/// (through the transform's ForwardBlocks for claimed parameters).
/// Errors: kInternal when the plan names a shard the rank does not hold
/// (rank and parameter index named); the service's and the transform's.
Status ExecuteRankPlan(const ReshardPlan& plan, const RankPlan& rank_plan,
                       const RankBuffers& buffers, CopyService& service,
                       ReshardTransform* transform = nullptr,
                       ExecuteTimes* times = nullptr);

/// One rank's share of one of several plans run together: a refit into
/// several destination layouts at once (one plan per destination, task ids
/// disjoint across the plans).
struct RankWork {
  const ReshardPlan* plan = nullptr;
  const RankPlan* rank_plan = nullptr;
  const RankBuffers* buffers = nullptr;
  ReshardTransform* transform = nullptr;  ///< may be nullptr
};

/// ExecuteRankPlan of every work with one Run of `service` for all their
/// ops (and one more for all their forwards when any plan has a forward
/// phase), so that every message of the refit is in flight at once.
/// Errors: as ExecuteRankPlan.
Status ExecuteRankPlans(std::span<const RankWork> works, CopyService& service,
                        ExecuteTimes* times = nullptr);

}  // namespace refit::exec

#endif  // REFIT_EXEC_EXECUTOR_H_
