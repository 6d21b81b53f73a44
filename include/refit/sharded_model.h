// One rank's model as a Megatron trainer or an inference engine holds it: the
// model spec, the parallel layout, the rank within that layout and its local
// tensors by Megatron parameter name. Mirrors what Megatron's refit reads
// from a model core (megatron/core/resharding/refit.py, utils.py
// extract_param_metadata; megatron_resharding.md §1.3).
#ifndef REFIT_SHARDED_MODEL_H_
#define REFIT_SHARDED_MODEL_H_

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "refit/core/format/dst_format.h"
#include "refit/core/layout.h"
#include "refit/core/model_spec.h"
#include "refit/core/status.h"
#include "refit/tensor_view.h"

namespace refit {

/// The parallel sizes of a layout (tp, pp, ep, etp, cp, uneven first / last
/// pipeline stages), as in ParseParallelConfig("tp=2,ep=4").
using ParallelLayout = ParallelConfig;

struct ShardedModel {
  /// The model (ModelSpecFromConfigJson of its HF config.json). Its dtypes are
  /// the source (trainer) dtypes on both sides: a destination in another
  /// format is asked for with SwapOptions::transform, not by another spec.
  std::shared_ptr<const ModelSpec> spec;
  ParallelLayout layout;
  /// This rank within `layout` (not within the refit group: the group rank is
  /// rank + the side's rank offset) and the layout's world size.
  int rank = 0;
  int world_size = 1;
  /// Local tensors by the name the parameter has in this rank's Megatron
  /// model (LocalName: layer index local to the pipeline stage, expert index
  /// local to the EP rank, e.g. "decoder.layers.0.mlp.experts.linear_fc1.
  /// weight3"), each of the shape and dtype ShardShapes gives. A weight
  /// quantised by the transform binds NAME (F8_E4M3) and its scales,
  /// NAME_scale_inv (F32, block FP8) or NAME_scale (U8 holding E8M0, MXFP8).
  /// The routed experts of a layer may instead be bound stacked, one tensor
  /// per weight and per scale tensor (ExpertBinding::kStacked; ShardShapes
  /// lists them), on either side; a tensor bound both ways is an error.
  std::unordered_map<std::string, TensorView> tensors;
};

/// How a rank binds the routed experts of each layer.
///  - kPerExpert: one tensor per local expert and weight,
///    "decoder.layers.L.mlp.experts.linear_fc1.weight<i>" (i: local expert
///    index, 0 .. E_local - 1, global expert = ep_rank * E_local + i).
///  - kStacked: one tensor per weight, "decoder.layers.L.mlp.experts.
///    linear_fc1.weight" of shape [E_local, rows, cols] whose slice i is
///    exactly expert i's per-expert shard (likewise linear_fc2.weight, and a
///    quantised destination's NAME_scale_inv [E_local, srows, scols] or
///    NAME_scale). This is vLLM's / SGLang's FusedMoE layout: linear_fc1 is
///    w13_weight [E_local, 2 * I_etp, H] ([gate rows; up rows] of this ETP
///    rank), linear_fc2 is w2_weight [E_local, H, I_etp]. docs/LAYOUTS.md §1.
enum class ExpertBinding : uint8_t { kPerExpert, kStacked };

/// The binding a layout family's routed experts take in ShardShapes and in
/// saved rank files: kStacked for vllm / sglang (FusedMoE holds only the
/// stacks), kPerExpert otherwise.
ExpertBinding DefaultExpertBinding(LayoutFamily family);

/// One tensor a rank binds.
struct ShardShape {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype = DType::kBF16;
};

/// The tensors rank `rank` of `layout` (world `world_size`) holds, in spec
/// order: every parameter and persistent buffer of its pipeline stage and EP
/// rank with its local shard shape (vocabulary shards include their padding
/// rows). With `transform` (a destination format) the shapes and dtypes are
/// the destination's, each quantised weight followed by its scale tensor.
/// With ExpertBinding::kStacked each layer's routed experts are listed as
/// stacked tensors [E_local, ...] (at the place of their first expert)
/// instead of one tensor per expert; vllm / sglang layouts always list the
/// stacks (DefaultExpertBinding). Names follow the layout's family
/// (docs/LAYOUTS.md §2): Megatron local names, vLLM / SGLang engine names
/// (qkv_proj, gate_up_proj, experts.w13_weight, fused_qkv_a_proj, ...) or
/// whole HF tensors.
/// Errors: kInvalidArgument when the layout does not divide the model or the
/// transform does not apply (the message names the field or tensor).
Result<std::vector<ShardShape>> ShardShapes(
    const ModelSpec& spec, const ParallelLayout& layout, int rank,
    int world_size, const PrecisionOptions* transform = nullptr,
    ExpertBinding experts = ExpertBinding::kPerExpert);

}  // namespace refit

#endif  // REFIT_SHARDED_MODEL_H_
