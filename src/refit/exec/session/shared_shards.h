// Shards that two destination models of one refit hold alike on one rank
// (include/refit/swap.h DestinationModel): the sources send them once, to
// the first of the two, and the rank copies them into the other.
#ifndef REFIT_EXEC_SESSION_SHARED_SHARDS_H_
#define REFIT_EXEC_SESSION_SHARED_SHARDS_H_

#include <cstdint>
#include <span>
#include <vector>

#include "refit/core/format/dst_format.h"
#include "refit/core/model_spec.h"
#include "refit/core/planner.h"

namespace refit::exec {

/// One destination shard that a destination leaves to another on its rank.
struct CopiedShard {
  int rank = 0;        ///< global (group) rank
  uint32_t param = 0;  ///< spec index
  uint32_t from = 0;   ///< the destination it is copied from (< its own)
};

/// The shards destination `d` (topos[d], formats[d]) holds on some rank
/// with the same bytes as an earlier destination e < d on that rank: the
/// same layout family, shard geometry (ShardOf: local shape, split
/// dimension and segments) and destination format (kind, dtype, blocks,
/// scale format, swizzle). Each copied from the first such e; ordered by
/// (rank, param).
std::vector<CopiedShard> SharedShards(const ModelSpec& spec,
                                      std::span<const RefitTopology> topos,
                                      std::span<const FormatPlan> formats,
                                      size_t d);

/// PlanOptions::skip_dst of `copied` (keys rank * params + param, sorted).
std::vector<uint64_t> SkipKeys(std::span<const CopiedShard> copied,
                               size_t params);

}  // namespace refit::exec

#endif  // REFIT_EXEC_SESSION_SHARED_SHARDS_H_
