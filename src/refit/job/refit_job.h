// The main job on the embedded copy service: every rank of the refit group is
// a thread of this process. Builds each source rank's shards from the
// checkpoint (what a Megatron trainer with that layout holds), refits them
// into the destination layout, times it and checks every destination shard
// byte for byte against the checkpoint sliced directly into that layout.
#ifndef REFIT_JOB_REFIT_JOB_H_
#define REFIT_JOB_REFIT_JOB_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "refit/checkpoint/checkpoint_shards.h"
#include "refit/core/format/dst_format.h"
#include "refit/core/memory_kind.h"
#include "refit/core/planner.h"
#include "refit/exec/session/tensor_binding.h"
#include "refit/swap.h"

namespace refit::exec {

/// Checks destination rank `dst_layout_rank`'s tensors, named and laid out
/// as its layout family holds them (SideBinding::Tensors, vllm / sglang
/// experts stacked): returns how many differ from the checker's own
/// reference (e.g. verify/engine_reference.h).
using DstTensorCheck = std::function<Result<uint64_t>(
    int dst_layout_rank, const std::vector<SideBinding::TensorBytes>&)>;

/// A destination refit in the same pass as the job's main one (one
/// SwapModelWeights over several DestinationModel; docs/LAYOUTS.md §2.5): its
/// topology (the main one's source layout and world, its own destination
/// layout and rank offset) and its formats (ResolveFormats of the job's
/// precision over that topology).
struct JobDestination {
  RefitTopology topo;
  FormatPlan formats;
};

struct RefitJobOptions {
  int iters = 5;          ///< timed refits after one warm-up refit
  bool baseline = false;  ///< also time memcpy of the same destination bytes
  std::string save_dir;   ///< if set, write DIR/rank-NNNNN.safetensors
  /// How long a rank waits for a peer's message before the refit fails.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  /// Destination formats (ResolveFormats of `precision` over the same spec
  /// and topology; the plan must be built with formats->plan_options()).
  /// nullptr: every destination shard is a copy of the source's.
  const FormatPlan* formats = nullptr;
  /// What `formats` was resolved from: the refit's transform (used when
  /// formats is set).
  PrecisionOptions precision;
  /// kCuda: the tensors are copied to the current CUDA device once, refit
  /// there (LocalWorldOptions::memory = kCuda), and copied back to be
  /// checked; the memcpy baseline is then a device-to-device copy.
  MemoryKind memory = MemoryKind::kHost;
  /// Node fan-out of the refits (SwapOptions::fanout_gpus_per_node); 0 off.
  int fanout_gpus_per_node = 0;
  /// Integrity checks of the refits' messages (SwapOptions::verify).
  VerifyMode verify = VerifyMode::kAuto;
  /// All-or-nothing refits through a shadow copy (SwapOptions::atomic).
  bool atomic = false;
  /// Also checks every destination rank by name after the first and the
  /// last refit (unset: no such check). The main destination only.
  DstTensorCheck dst_check;
  /// More destinations fed in the same refit pass; each is checked byte for
  /// byte like the main one (not saved, not in the memcpy baseline).
  std::vector<JobDestination> also;
};

struct RefitJobReport {
  uint64_t wrong = 0;  ///< destination shards that differ from the checkpoint
  /// Per destination (the main one first, then RefitJobOptions::also): its
  /// shards that differ.
  std::vector<uint64_t> wrong_per_destination;
  /// Destination bytes one refit writes, all destinations: the plan's
  /// remote + local bytes with one destination; with several, the ranks'
  /// received + local + copied bytes (SwapReport).
  uint64_t dst_bytes = 0;
  /// Bytes copied on the ranks from one destination's shard into another's
  /// (SwapReport::bytes_copied, all ranks).
  uint64_t bytes_copied = 0;
  std::vector<double> refit_ms;  ///< one per timed iteration
  double refit_ms_min = 0;
  double refit_ms_median = 0;
  double gbps = 0;  ///< destination bytes / median refit time, 1e9 B/s
  double memcpy_ms_median = 0;  ///< baseline only
  double memcpy_gbps = 0;       ///< baseline only
  std::vector<std::string> saved_files;
  /// With RefitJobOptions::dst_check: tensors it checked (per check, all
  /// destination ranks) and those it found different (after either check).
  uint64_t checked_tensors = 0;
  uint64_t checked_wrong = 0;
  /// Largest transform staging of one rank (receive accumulation of
  /// receiver-side quantised shards plus converted send bytes), bytes.
  uint64_t transform_staging_bytes = 0;
  /// With RefitJobOptions::atomic: the shadow copies of all ranks, bytes;
  /// and over the timed refits, the median of the slowest rank's ms to fill
  /// its shadow and to publish it (SwapReport::shadow_ms, publish_ms).
  uint64_t shadow_bytes = 0;
  double shadow_ms_median = 0;
  double publish_ms_median = 0;
};

/// The median of `values` (the upper one of an even count); 0 when empty.
double Median(std::vector<double> values);

/// Sets refit_ms_min, refit_ms_median and gbps of `report` from its refit_ms
/// and the bytes one refit moves.
void SummarizeRefitTimes(uint64_t bytes, RefitJobReport& report);

/// Runs the job. A shard is counted wrong once if it differs after the first
/// (warm-up) refit or after the last one; with formats, the expected shard is
/// the checkpoint converted directly (dst_reference.h). Files are saved only
/// when nothing is wrong, each written atomically; a quantised weight NAME is
/// saved as NAME (F8_E4M3) plus NAME_scale_inv (F32, block FP8) or NAME_scale
/// (U8 E8M0, MXFP8; 1-D when swizzled).
/// Errors: the copy service's and the writer's (kIoError naming the file).
Result<RefitJobReport> RunEmbeddedRefit(const ModelSpec& spec,
                                        const BoundCheckpoint& ckpt,
                                        const RefitTopology& topo,
                                        const ReshardPlan& plan,
                                        const RefitJobOptions& options);

}  // namespace refit::exec

#endif  // REFIT_JOB_REFIT_JOB_H_
