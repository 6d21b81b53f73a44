// Building shards from a Hugging Face checkpoint, and checking them.
//
// A shard's bytes are read straight from the checkpoint's HF tensors through
// the spec's row mapping (QKV interleave, [gate; up] concatenation), so the
// "expected" destination is computed independently of the planner. Block-FP8
// checkpoints (DeepSeek-V3 / Kimi-K2: F8_E4M3 weights with F32
// `weight_scale_inv`, layouts.md §4.1) are dequantised per HF tensor, or kept
// as FP8 with their scales (Fp8Source).
#ifndef REFIT_CHECKPOINT_CHECKPOINT_SHARDS_H_
#define REFIT_CHECKPOINT_CHECKPOINT_SHARDS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "refit/checkpoint/stacked_experts.h"
#include "refit/core/model_spec.h"
#include "refit/core/quant/block_grid.h"
#include "refit/core/shard.h"
#include "refit/exec/format_transform.h"
#include "refit/exec/shard_arena.h"
#include "refit/io/safetensors.h"

namespace refit::exec {

/// What BindCheckpoint does with block-FP8 source tensors (DeepSeek-V3 /
/// Kimi-K2: F8_E4M3 `<name>` plus F32 `<name>_scale_inv`, layouts.md §4.1).
enum class Fp8Source : uint8_t {
  /// The parameter keeps the config dtype (BF16): shards hold W[n, k] =
  /// E4M3ToF32(fp8[n, k]) * scale_inv[n / B_r, k / B_c] in F32, rounded RNE to
  /// that dtype (quant::DequantizeBlockFp8 of each HF tensor).
  kDequantise,
  /// The parameter's dtype becomes F8_E4M3: shards hold the FP8 bytes as
  /// stored, FillShardScales their blocks' scales.
  kKeep,
};

/// For every parameter, its HF tensors in hf_names order.
struct BoundCheckpoint {
  std::vector<std::vector<const io::TensorRef*>> sources;
  /// Per parameter, the F32 `_scale_inv` tensor of each of its HF tensors
  /// (same order as sources); empty for a parameter that is not block FP8.
  std::vector<std::vector<const io::TensorRef*>> scales;
  /// Blocks of the FP8 tensors: config quantization_config.weight_block_size
  /// (ModelSpec::fp8_block), 128 x 128 when the config names none.
  quant::BlockShape block;
  Fp8Source fp8 = Fp8Source::kDequantise;
  std::vector<std::string> skipped;  ///< HF tensors of MTP layers, not refit
  /// The per-expert views of stacked expert tensors (HF v5
  /// "experts.gate_up_proj" / "experts.down_proj") that `sources` point to.
  std::shared_ptr<const StackedExperts> stacked;

  /// True when parameter `param` is stored as block FP8.
  bool quantised(size_t param) const { return !scales[param].empty(); }
};

/// Checks the checkpoint against the spec and binds every parameter to its
/// HF tensors. Adopts the checkpoint dtype when the config names none.
/// A tensor's dtype must equal the parameter's, except that parameters whose
/// dtype Megatron fixes to fp32 (router.weight, router.expert_bias) accept
/// BF16/F16 (widened exactly), and that a 2-D parameter may be block FP8: all
/// its HF tensors F8_E4M3, each with an F32 `<name>_scale_inv` of shape
/// [ceil(rows / B_r), ceil(cols / B_c)] (B = block). Block-FP8 parameters are
/// bound with their scales; with `fp8` kKeep their dtype becomes F8_E4M3.
/// Tensors of layers >= num_layers (MTP), a tied model's stored lm_head and
/// RoPE inv_freq buffers are skipped and listed. Routed experts may be stored
/// per expert ("P.experts.<e>.gate_proj.weight", ...) or stacked as
/// transformers v5 and Megatron-Bridge write them ("P.experts.gate_up_proj"
/// [E, 2I, H], gate rows then up rows; "P.experts.down_proj" [E, H, I];
/// StackedExperts); a stack of another shape is an error naming it and both
/// shapes.
/// Errors: kFailedPrecondition naming the tensor: missing, wrong shape, wrong
/// dtype, a tensor the model does not have (the checkpoint path is named), a
/// missing or ill-shaped scale, a parameter whose HF tensors are partly FP8,
/// a `_scale_inv` beside a tensor that is not FP8; with kKeep, an FP8
/// parameter interleaved per query group (QKV; its blocks cannot be kept);
/// kUnimplemented for Mllama vision-tower tensors.
Result<BoundCheckpoint> BindCheckpoint(ModelSpec& spec,
                                       const io::Checkpoint& ckpt,
                                       Fp8Source fp8 = Fp8Source::kDequantise);

/// Writes the shard `g` of parameter `param` (`p` = its spec) into `out`,
/// which holds the whole local shard of p.dtype elements. Bytes outside the
/// segments (vocabulary padding) are left as they are. Block-FP8 sources are
/// dequantised (kDequantise) or copied as they are (kKeep).
void FillShard(const ParamSpec& p, const BoundCheckpoint& ckpt, size_t param,
               const ShardGeometry& g, std::byte* out);

/// FillShard from the HF tensors `hf` alone (ckpt.sources[param]). Cannot
/// dequantise: a block-FP8 parameter bound with kDequantise needs the
/// overload above (this one aborts with a message naming the tensor).
void FillShard(const ParamSpec& p, const std::vector<const io::TensorRef*>& hf,
               const ShardGeometry& g, std::byte* out);

/// The F32 scales of shard `g` of block-FP8 parameter `param` (bound with
/// kKeep, or kDequantise), laid out as ScaleLayoutOf(p, f, g) for a kFp8Block
/// format f with f.block = ckpt.block: per segment (split at HF-tensor
/// boundaries, SplitAtBlockParts) the scale rows (dim 0) or columns (dim 1,
/// row-parallel) of every HF block it touches, so a TP cut through a block
/// repeats that block's scale. `out` holds ScaleLayoutOf(...).bytes bytes.
/// Requires ckpt.quantised(param).
void FillShardScales(const ParamSpec& p, const BoundCheckpoint& ckpt,
                     size_t param, const ShardGeometry& g, std::byte* out);

/// True when the segments of `actual` equal what FillShard would write.
/// `scratch` is reused between calls.
bool ShardMatches(const ParamSpec& p, const BoundCheckpoint& ckpt, size_t param,
                  const ShardGeometry& g, const std::byte* actual,
                  std::vector<std::byte>& scratch);

/// ShardMatches from the HF tensors alone (same limits as that FillShard).
bool ShardMatches(const ParamSpec& p,
                  const std::vector<const io::TensorRef*>& hf,
                  const ShardGeometry& g, const std::byte* actual,
                  std::vector<std::byte>& scratch);

/// FillShard of every shard of `arena`.
void FillArena(const ModelSpec& spec, const BoundCheckpoint& ckpt,
               const ShardArena& arena);

/// Sets wrong[p] for every shard p of `arena` that is not ShardMatches
/// (`wrong` is indexed by parameter; other entries are left as they are).
void MarkWrongShards(const ModelSpec& spec, const BoundCheckpoint& ckpt,
                     const ShardArena& arena, std::vector<bool>& wrong);

/// The checkpoint's scales (FillShardScales) of the shards of `arena` (a
/// rank's source shards, built from `spec`) that `formats` keeps as block
/// FP8. `arena` must outlive the result.
SourceScales KeptSourceScales(const ModelSpec& spec, const FormatPlan& formats,
                              const BoundCheckpoint& ckpt,
                              const ShardArena& arena);

}  // namespace refit::exec

#endif  // REFIT_CHECKPOINT_CHECKPOINT_SHARDS_H_
