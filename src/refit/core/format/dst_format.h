// The destination format of every parameter of a refit: a plain copy, a cast
// (F32 <-> BF16 <-> F16), block FP8 (DeepSeek-V3 / Kimi-K2, layouts.md §4.1)
// or MXFP8 (OCP MX v1.0, layouts.md §4.2); where the conversion runs (sender
// or receiver); and dtype harmonisation of persistent buffers (Megatron
// resharding/refit.py `_harmonize_buffer_dtypes`, megatron_resharding.md
// §3.4). Pure and deterministic: every rank resolves the same formats from the
// same inputs, so sender and receiver agree on the wire format without
// talking.
#ifndef REFIT_CORE_FORMAT_DST_FORMAT_H_
#define REFIT_CORE_FORMAT_DST_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "refit/core/dtype.h"
#include "refit/core/planner.h"
#include "refit/core/quant/block_fp8.h"
#include "refit/core/status.h"

namespace refit {

/// What a destination shard holds.
enum class FormatKind : uint8_t {
  kPlain,     ///< elements of ParamFormat::dtype: a copy or a cast
  kFp8Block,  ///< F8_E4M3 data [n, k] + F32 scale_inv per block (§4.1)
  kMxfp8,     ///< F8_E4M3 data [m, k] + E8M0 scale per 1 x 32 along k (§4.2)
};

/// Where a conversion runs.
enum class ConvertSide : uint8_t {
  kSend,  ///< the sender converts each piece; converted bytes travel
  kRecv,  ///< source bytes travel; the receiver converts
};

/// One explicit transform, applied to every parameter whose Megatron name
/// (global layer and expert indices, e.g.
/// "decoder.layers.3.mlp.experts.linear_fc1.weight7") matches `pattern`, a
/// shell glob (fnmatch: `*`, `?`, `[...]`).
struct FormatRule {
  std::string pattern = "*";
  FormatKind kind = FormatKind::kPlain;
  DType dtype = DType::kBF16;  ///< kPlain: the destination dtype
  /// False: persistent buffers are not matched (they are harmonised instead).
  bool buffers = true;
};

/// How the destination is asked for.
struct PrecisionOptions {
  /// The dtype the destination model declares for every tensor; unset means
  /// each tensor's source dtype. A parameter whose declared dtype differs
  /// from its source dtype needs a rule; a buffer without one is harmonised.
  std::optional<DType> dst_model_dtype;
  /// Explicit transforms; when several match a tensor the last one wins.
  /// Quantising rules skip tensors that are not quantisable
  /// (IsQuantisableWeight); kPlain rules skip non-float tensors.
  std::vector<FormatRule> rules;
  ConvertSide cast_on = ConvertSide::kSend;
  /// Unset: block FP8 on the sender where every piece holds whole blocks,
  /// MXFP8 on the receiver (megatron_resharding.md §3.2 default).
  std::optional<ConvertSide> quantize_on;
  quant::BlockFp8Options fp8;   ///< block extents and scale rounding
  bool mxfp8_swizzled = false;  ///< MXFP8 scales in the 128x4 layout
  /// Blocks of the source parameters stored as block FP8 (F8_E4M3 spec
  /// dtype, `--fp8-source keep`): the checkpoint's weight_block_size. They
  /// travel as they are, data with the scales of their blocks.
  quant::BlockShape kept_fp8_block;
};

/// The resolved destination format of one parameter.
struct ParamFormat {
  FormatKind kind = FormatKind::kPlain;
  /// kPlain: the destination dtype; quantised kinds: kF8E4M3.
  DType dtype = DType::kBF16;
  /// The source (trainer) dtype.
  DType src_dtype = DType::kBF16;
  ConvertSide side = ConvertSide::kRecv;
  /// kFp8Block: its blocks; kMxfp8: {1, 32}.
  quant::BlockShape block;
  quant::BlockScaleFormat scale_format = quant::BlockScaleFormat::kF32;
  bool swizzled = false;  ///< kMxfp8 only
  /// A buffer whose declared destination dtype differed from the source's:
  /// the destination buffer takes the source dtype (reconciled once per plan).
  bool harmonised = false;
  /// > 1: destination shards receive their segments widened to blocks of this
  /// many elements along the split dimension (PlanOptions::dst_block).
  int64_t recv_block = 0;

  /// True when bytes change on the way (a cast or a quantisation).
  bool converts() const {
    return kind != FormatKind::kPlain || dtype != src_dtype;
  }
};

/// Every parameter's format, in spec order, and counts for reports.
struct FormatPlan {
  std::vector<ParamFormat> params;
  int64_t casts = 0;       ///< kPlain parameters whose dtype changes
  int64_t quantised = 0;   ///< parameters quantised by the refit
  int64_t kept = 0;        ///< block-FP8 sources kept as they are
  int64_t harmonised = 0;  ///< buffers reconciled to the source dtype
  int64_t send_side = 0;   ///< converting parameters converted by the sender

  /// True when any parameter goes through the transform (converts, or
  /// travels with its scales).
  bool any_conversion() const { return casts + quantised + kept > 0; }
  /// The planner options these formats need: dst_block per parameter, and
  /// no_fanout for those quantised on the receiver (their destination bytes
  /// exist only once the whole shard is in; fan-out is off until a caller
  /// sets fanout_gpus_per_node).
  PlanOptions plan_options() const;
};

/// True for the tensors the reference FP8 checkpoints quantise (DeepSeek-V3 /
/// Kimi-K2 `weight_scale_inv` tensors): 2-D linear weights. Not the
/// embedding, the output layer, norms, the router or buffers
/// (e_score_correction_bias = router.expert_bias).
bool IsQuantisableWeight(const ParamSpec& p);

/// Resolves every parameter's format for a refit from `spec` (whose dtypes
/// are the source dtypes) over `topo`. Side rules: casts follow
/// options.cast_on. Block FP8 goes on the sender only when every source and
/// every destination shard holds whole blocks along the split dimension
/// (then so does every piece); otherwise on the receiver, which receives its
/// shard widened to whole blocks (recv_block) when a destination TP cut goes
/// through a block, so scales always cover whole blocks. MXFP8 goes on the
/// sender only when asked, unswizzled, and every K cut is 32-aligned.
/// Errors (kInvalidArgument, naming the tensor): a parameter whose declared
/// destination dtype differs from its source dtype and no rule covers it;
/// a cast from or to a non-float or FP8 dtype; MXFP8 of a tensor whose K is
/// not a multiple of 32 or whose TP cuts K off a 32-element boundary; a
/// quantising rule on a non-float source; block extents <= 0; a source kept
/// as block FP8 that a rule would cast or re-quantise, or whose source or
/// destination TP cuts one of its blocks (it must be dequantised then).
/// A vllm / sglang destination casts router weights to the dtype its engine
/// holds them in (EngineRouterDType, engine_names.h; docs/LAYOUTS.md §2.1)
/// on options.cast_on, unless a rule other than "*" matches the router.
Result<FormatPlan> ResolveFormats(const ModelSpec& spec,
                                  const RefitTopology& topo,
                                  const PrecisionOptions& options);

/// True when the destination layout of `topo` converts some parameter of
/// `spec` by itself (an engine layout's router dtype, EngineRouterDType): a
/// refit into it resolves formats even when the caller asks for none.
bool EngineLayoutCasts(const ModelSpec& spec, const RefitTopology& topo);

/// Every parameter a plain copy in its source dtype (no conversion).
FormatPlan IdentityFormats(const ModelSpec& spec);

/// The destination spec: `spec` with every parameter's dtype replaced by its
/// format's (F8_E4M3 for quantised weights).
ModelSpec DestinationSpec(const ModelSpec& spec, const FormatPlan& formats);

/// The piece's box in elements, as rows x cols of its (2-D) parameter:
/// [len, K] for a cut along dim 0, [N, len] along dim 1 (also when the
/// planner stored its N runs as one). `esize` is the element size the
/// piece's byte fields count in.
struct PieceBox {
  int64_t rows = 0;
  int64_t cols = 0;
};
PieceBox BoxOf(const ParamSpec& p, const Piece& piece, uint64_t esize);

/// Bytes `piece` (of the plan built on the source spec) takes on the wire
/// under `f`: a send-side cast scales it to the destination dtype, a
/// send-side quantisation sends data plus scales, anything else sends the
/// source bytes.
uint64_t WireBytes(const ParamSpec& p, const ParamFormat& f,
                   const Piece& piece);

/// Sum of WireBytes over the pieces of the plan's remote ops.
uint64_t PlanWireBytes(const ModelSpec& spec, const FormatPlan& formats,
                       const ReshardPlan& plan);

/// Parses "bf16", "f16", "f32", "fp8-block" or "mxfp8" (the `--dst-dtype`
/// values) into options: a cast of every float parameter (buffers are
/// harmonised) with dst_model_dtype set, or a quantising rule for every
/// quantisable weight. Errors: kInvalidArgument naming the value.
Status ApplyDstDType(std::string_view value, PrecisionOptions& options);

/// Parses a `--cast` rule "PATTERN=DTYPE" (DTYPE bf16, f16 or f32), which
/// also matches buffers. Errors: kInvalidArgument naming the rule.
Result<FormatRule> ParseCastRule(std::string_view rule);

}  // namespace refit

#endif  // REFIT_CORE_FORMAT_DST_FORMAT_H_
