// `refit run --dump-plan`: the reshard plan as JSON, alike for the embedded
// and the multi-process job.
#ifndef REFIT_CLI_PLAN_JSON_H_
#define REFIT_CLI_PLAN_JSON_H_

#include <string>

#include "refit/core/model_spec.h"
#include "refit/core/planner.h"
#include "refit/core/shard.h"

namespace refit::cli {

/// The plan as JSON for the PyTorch baseline (bench/torch_reshard.py): every
/// shard's size and every piece, in byte coordinates of the local shards.
/// `plan` is the whole plan (BuildReshardPlan), one line ending in '\n'.
std::string PlanJson(const ModelSpec& spec, const RefitTopology& topo,
                     const ReshardPlan& plan);

}  // namespace refit::cli

#endif  // REFIT_CLI_PLAN_JSON_H_
