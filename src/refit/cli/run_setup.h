// `refit run`: its options, and the checkpoint and topology they name. Shared
// by the embedded job (ranks are threads) and the multi-process one (mpirun).
#ifndef REFIT_CLI_RUN_SETUP_H_
#define REFIT_CLI_RUN_SETUP_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "refit/checkpoint/checkpoint_shards.h"
#include "refit/core/format/dst_format.h"
#include "refit/core/format/precision_choices.h"
#include "refit/core/model_spec.h"
#include "refit/core/planner.h"
#include "refit/core/status.h"
#include "refit/io/safetensors.h"
#include "refit/job/refit_job.h"
#include "refit/swap.h"

namespace refit::cli {

/// The options of `refit run` (and of `refit bench --scale`); the destination
/// format choices (--dst-dtype, --cast, ...) are the base.
struct RunOptions : PrecisionChoices {
  std::string checkpoint = REFIT_DEFAULT_CHECKPOINT;
  std::string src = "tp=2,ep=2";
  std::string dst = "tp=1,ep=4";
  /// Destination layout family (LayoutFamily: megatron, vllm, sglang, hf);
  /// empty: the --dst string's (default megatron).
  std::string dst_family;
  /// Refit the MTP layers too (ModelSpecOptions::mtp).
  bool mtp = false;
  int world = 0;
  int src_world = 0;
  int dst_world = 0;
  int iters = 5;
  bool baseline = false;
  std::string json_path;
  std::string save_dir;
  std::string dump_plan;
  double timeout_s = 60;       ///< how long a rank waits for a peer
  std::string device = "cpu";  ///< cpu or cuda (tensors on the GPU)
  uint64_t max_staging_bytes = 256ull << 20;  ///< per rank (MPI only)
  /// Block-FP8 source checkpoints: "dequantise" (to the config dtype) or
  /// "keep" (FP8 data; scales by exec::FillShardScales).
  std::string fp8_source = "dequantise";
  /// Node fan-out (SwapOptions::fanout_gpus_per_node): GPUs per node, 0 off.
  int fanout_gpus_per_node = 0;
  /// --verify: "auto", "none" or "checksum" (SwapOptions::verify).
  std::string verify = "auto";
  /// --atomic (SwapOptions::atomic).
  bool atomic = false;
  /// --also-dst: more destinations fed in the same pass, each
  /// "LAYOUT" (on the --dst ranks) or "LAYOUT@WORLD+OFFSET" (WORLD ranks
  /// from group rank OFFSET; the group grows to hold them).
  std::vector<std::string> also_dst;

  VerifyMode verify_mode() const {
    return verify == "checksum" ? VerifyMode::kChecksum
           : verify == "none"   ? VerifyMode::kNone
                                : VerifyMode::kAuto;
  }
  /// The refits carry checksums: --verify checksum, or auto on host tensors.
  bool checksummed() const {
    return verify_mode() == VerifyMode::kChecksum ||
           (verify_mode() == VerifyMode::kAuto && device == "cpu");
  }
  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  }
};

/// The model, its checkpoint (memory-mapped) bound to it, and the topology.
struct RunSetup {
  ModelSpec spec;
  std::unique_ptr<io::Checkpoint> ckpt;
  exec::BoundCheckpoint bound;
  std::optional<RefitTopology> topo;
  PrecisionOptions precision;  ///< what the options ask for
  FormatPlan formats;          ///< `precision` resolved over spec and topo
  /// What the plan is built with: the formats' options and the fan-out.
  PlanOptions plan_options;
  /// --also-dst: the other destinations of the pass, in option order.
  std::vector<exec::JobDestination> also;
};

/// Loads and binds the checkpoint and builds the topology. `processes`: how
/// many processes mpirun started, one rank each, or 0 when the ranks are
/// threads of this process; with processes > 0, --world defaults to it and
/// the topology must have exactly that many ranks.
/// Errors: those of the loader and the binder (naming the file or tensor);
/// kInvalidArgument naming the option for layouts and world sizes.
Result<RunSetup> PrepareRun(const RunOptions& o, int processes);

/// The precision options `o` asks for.
/// Errors: kInvalidArgument naming the option and value.
Result<PrecisionOptions> MakePrecisionOptions(const RunOptions& o);

/// Logs the checkpoint tensors that are not refit (MTP layers, tied copies).
void LogSkippedTensors(const RunSetup& s);

}  // namespace refit::cli

#endif  // REFIT_CLI_RUN_SETUP_H_
