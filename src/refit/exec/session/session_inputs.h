// What each rank brings to a refit (its model's fingerprint, the layouts of
// the sides it holds, the rank offsets and the transform), as one record that
// the group all-gathers, and the topology every rank derives from all records
// alike (Megatron gathers the same picture with one all_gather_object:
// planner.py build_local_reshard_plan; megatron_resharding.md §1.5).
#ifndef REFIT_EXEC_SESSION_SESSION_INPUTS_H_
#define REFIT_EXEC_SESSION_SESSION_INPUTS_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "refit/core/planner.h"
#include "refit/core/status.h"
#include "refit/swap.h"

namespace refit::exec {

/// This rank's record: its destination models each as
/// "LAYOUT@WORLD+OFFSET", in order. Errors: kInvalidArgument when a model's
/// rank plus its offset is not `group_rank`, or a model has no spec, or the
/// models' specs differ, or two destination models have the same layout,
/// world and offset.
Result<std::string> InputsRecord(const ShardedModel* src,
                                 std::span<const DestinationModel> dsts,
                                 int group_rank, const SwapOptions& options);

/// One destination of the refit: a layout over ranks [offset, +world).
struct AgreedDestination {
  ParallelConfig layout;
  int world = 0;
  int offset = 0;
};

/// The source layout (parallel sizes and world) every record that names one
/// agrees on, and every destination some record names, in the order of their
/// "LAYOUT@WORLD+OFFSET" text. Errors: kFailedPrecondition "rank R's inputs
/// differ from rank Q's: FIELD ..." when records disagree; kInvalidArgument
/// when no rank holds a source or no rank a destination.
struct AgreedInputs {
  ParallelConfig src;
  int src_world = 0;
  std::vector<AgreedDestination> dsts;
};
Result<AgreedInputs> AgreeOnRecords(const std::vector<std::string>& records);

/// True when no rank binds a tensor outside host memory (the records'
/// `memory` field, which ranks need not agree on): VerifyMode::kAuto then
/// checksums the refit.
bool GroupBindsHostOnly(const std::vector<std::string>& records);

/// XXH64 of every record, in rank order: keys the caches.
uint64_t RecordsFingerprint(const std::vector<std::string>& records);

/// RecordsFingerprint of the records without their layouts' expert
/// placements: records that differ only in placements (an EPLB change
/// between refits) share it.
uint64_t PlacementFreeFingerprint(const std::vector<std::string>& records);

/// The topology of the source and destination `d` of `agreed` over `spec` in
/// a group of `world` ranks. Errors: Layout::Create's and MakeTopology's
/// (kInvalidArgument).
Result<RefitTopology> AgreedTopology(const AgreedInputs& agreed, size_t d,
                                     const ModelSpec& spec,
                                     const SwapOptions& options, int world);

/// The "LAYOUT@WORLD+OFFSET" text of a destination model at `offset`, and
/// of an agreed destination.
std::string DestinationKey(const ShardedModel& model, int offset);
std::string DestinationKey(const AgreedDestination& d);

}  // namespace refit::exec

#endif  // REFIT_EXEC_SESSION_SESSION_INPUTS_H_
