// `refit run --dst-family vllm|sglang|hf`: every destination tensor, by the
// name the engine gives it, against the independent engine reference
// (verify/engine_reference.h: built from config.json and the HF tensors by
// the engines' loading rules, without the planner's layout code).
#ifndef REFIT_CLI_ENGINE_CHECK_H_
#define REFIT_CLI_ENGINE_CHECK_H_

#include <optional>
#include <string>

#include "refit/cli/run_setup.h"
#include "refit/job/refit_job.h"

namespace refit::cli {

/// The check of a run whose destination is a vllm, sglang or hf layout;
/// nullopt (with the reason in `why_not`) for a Megatron destination or a
/// format the reference does not build (casts, MXFP8, block FP8 other than
/// F32 scales without an amax floor, FP8 sources kept as FP8).
/// The check is safe to call from every rank's thread at once.
std::optional<exec::DstTensorCheck> MakeEngineCheck(const RunOptions& o,
                                                    const RunSetup& s,
                                                    std::string* why_not);

}  // namespace refit::cli

#endif  // REFIT_CLI_ENGINE_CHECK_H_
