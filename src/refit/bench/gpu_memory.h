// Per-GPU memory of a refit scenario: what each side's ranks hold (weights in
// the side's format, scales included), the transport's staging, and whether
// it fits a GPU's HBM with room left for the inference engine's KV cache.
#ifndef REFIT_BENCH_GPU_MEMORY_H_
#define REFIT_BENCH_GPU_MEMORY_H_

#include <cstdint>
#include <string_view>

#include "refit/core/format/dst_format.h"
#include "refit/core/layout.h"
#include "refit/core/planner.h"
#include "refit/core/status.h"

namespace refit::bench {

/// One GPU's memory as `refit bench --gpu / --gpu-mem-gb / --headroom` give it.
struct GpuMemory {
  double hbm_gb = 80;     ///< GB (1e9 B) of HBM per GPU
  double headroom = 0.9;  ///< fraction of HBM that weights and staging may use
  /// Bytes weights and staging may use on one GPU.
  uint64_t budget_bytes() const {
    return static_cast<uint64_t>(hbm_gb * headroom * 1e9);
  }
};

/// HBM of a named GPU, GB: h100 80, h200 141, b200 192 (NVIDIA data sheets).
/// Errors: kInvalidArgument naming the GPU and the known ones.
Result<double> GpuHbmGb(std::string_view name);

/// The most bytes one rank of `layout` holds: its shards of `spec` (the
/// side's dtypes: DestinationSpec for a destination) plus the scale tensors
/// `formats` gives its quantised parameters (identity formats: none).
uint64_t MaxRankWeightBytes(const ModelSpec& spec, const FormatPlan& formats,
                            const Layout& layout);

/// Per-GPU memory of a scenario, bytes, each the largest over the side's
/// ranks.
struct ScenarioMemory {
  uint64_t src_weight_bytes = 0;
  uint64_t dst_weight_bytes = 0;
  /// The most receive staging one destination rank's format transform holds
  /// for the life of the plan (FormatTransform::ReceiveStagingBytes: shards
  /// quantised on the receiving side, widened to whole blocks, in the source
  /// dtype).
  uint64_t dst_recv_staging_bytes = 0;
  uint64_t staging_bytes = 0;  ///< the transport's bound on one rank
  bool collocated = false;     ///< both sides on the same GPUs
  /// The most one GPU holds: source + destination (with its receive
  /// staging) + staging when collocated, else the larger side plus staging.
  uint64_t max_gpu_bytes() const;
  /// The destination GPUs' bytes (what the inference engine must hold).
  uint64_t dst_gpu_bytes() const;
  bool Fits(const GpuMemory& gpu) const {
    return max_gpu_bytes() <= gpu.budget_bytes();
  }
};

/// The memory of refitting `spec` over `topo` into `formats`, with
/// `staging_bytes` of transport staging per rank.
ScenarioMemory ComputeScenarioMemory(const ModelSpec& spec,
                                     const FormatPlan& formats,
                                     const RefitTopology& topo,
                                     uint64_t staging_bytes);

}  // namespace refit::bench

#endif  // REFIT_BENCH_GPU_MEMORY_H_
