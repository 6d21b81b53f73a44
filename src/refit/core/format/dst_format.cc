#include "refit/core/format/dst_format.h"

#include <fnmatch.h>

#include <algorithm>
#include <string>

#include "refit/core/engine_names.h"
#include "refit/core/format/scale_layout.h"
#include "refit/core/quant/block_grid.h"
#include "refit/core/shard.h"

namespace refit {

namespace {

bool Matches(const FormatRule& rule, const ParamSpec& p) {
  if (p.is_buffer && !rule.buffers) return false;
  if (rule.kind != FormatKind::kPlain && !IsQuantisableWeight(p)) return false;
  if (rule.kind == FormatKind::kPlain && !IsFloat(p.dtype)) return false;
  return fnmatch(rule.pattern.c_str(), p.name.c_str(), 0) == 0;
}

const FormatRule* LastMatch(const PrecisionOptions& o, const ParamSpec& p) {
  const FormatRule* found = nullptr;
  for (const FormatRule& r : o.rules) {
    if (Matches(r, p)) found = &r;
  }
  return found;
}

bool IsCastable(DType d) {
  return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16;
}

// True when every shard of `p` in `layout` starts and ends its segments on
// block boundaries of their block parts along the split dimension (or at a
// part's end).
bool ShardsHoldWholeBlocks(const ParamSpec& p, const Layout& layout,
                           int64_t block) {
  for (int c = 0; c < ShardCoordCount(p, layout); ++c) {
    const ShardGeometry g = SplitAtBlockParts(p, ShardOf(p, layout, c));
    const std::vector<int64_t> bounds = BlockPartBounds(p, g.dim);
    for (const Segment& s : g.segments) {
      const auto part =
          std::upper_bound(bounds.begin(), bounds.end(), s.global_start) - 1;
      if (!quant::IsWholeBlockRange(*(part + 1) - *part, block,
                                    s.global_start - *part,
                                    s.global_start + s.length - *part)) {
        return false;
      }
    }
  }
  return true;
}

// True when every block part starts on a multiple of `block`, so that a
// piece crossing parts still holds whole blocks.
bool PartsAligned(const ParamSpec& p, int dim, int64_t block) {
  const std::vector<int64_t> bounds = BlockPartBounds(p, dim);
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    if (bounds[i] % block != 0) return false;
  }
  return true;
}

int SplitDim(const ParamSpec& p, const Layout& layout) {
  return ShardOf(p, layout, 0).dim;
}

Status Bad(const ParamSpec& p, const std::string& why) {
  return InvalidArgument("tensor " + p.name + ": " + why);
}

Status ResolveFp8(const ParamSpec& p, const RefitTopology& topo,
                  const PrecisionOptions& o, ParamFormat& f) {
  f.block = o.fp8.block;
  f.scale_format = o.fp8.scale_format;
  if (f.block.rows <= 0 || f.block.cols <= 0) {
    return Bad(p, "FP8 block extents must be positive");
  }
  const int dim = SplitDim(p, topo.dst);
  const int64_t along = dim == 0 ? f.block.rows : f.block.cols;
  const bool dst_whole = ShardsHoldWholeBlocks(p, topo.dst, along);
  const bool src_whole = SplitDim(p, topo.src) == dim &&
                         ShardsHoldWholeBlocks(p, topo.src, along) &&
                         PartsAligned(p, dim, along);
  // An engine's QKV rows ([q_r; k_r; v_r]) are not contiguous Megatron
  // rows: widening them to blocks would overlap. vLLM's block-quantised
  // QKVParallelLinear needs whole blocks per part as well.
  const bool engine_qkv = topo.dst.family() != LayoutFamily::kMegatron &&
                          p.shard == ShardKind::kColumn &&
                          p.hf_rows.size() == 3;
  if (engine_qkv && !dst_whole) {
    return Bad(p, "block FP8 in a " +
                      std::string(LayoutFamilyName(topo.dst.family())) +
                      " layout needs the q, k and v rows of every rank in "
                      "whole " +
                      std::to_string(along) +
                      "-row blocks, as the engine's block-quantised "
                      "QKVParallelLinear does");
  }
  const ConvertSide want = o.quantize_on.value_or(ConvertSide::kSend);
  f.side = want == ConvertSide::kSend && dst_whole && src_whole
               ? ConvertSide::kSend
               : ConvertSide::kRecv;
  if (!dst_whole) f.recv_block = along;
  return OkStatus();
}

Status ResolveMxfp8(const ParamSpec& p, const RefitTopology& topo,
                    const PrecisionOptions& o, ParamFormat& f) {
  f.block = {1, 32};
  f.swizzled = o.mxfp8_swizzled;
  if (p.shape[1] % 32 != 0) {
    return Bad(p, "MXFP8 needs K (" + std::to_string(p.shape[1]) +
                      ") to be a multiple of 32");
  }
  const bool dst_rows = SplitDim(p, topo.dst) == 0;
  if (!dst_rows && !ShardsHoldWholeBlocks(p, topo.dst, 32)) {
    return Bad(p, "MXFP8: the destination TP cuts K off a 32-element block");
  }
  const bool src_k_whole =
      SplitDim(p, topo.src) == 0 || ShardsHoldWholeBlocks(p, topo.src, 32);
  f.side = o.quantize_on == ConvertSide::kSend && !f.swizzled && src_k_whole
               ? ConvertSide::kSend
               : ConvertSide::kRecv;
  return OkStatus();
}

Status ApplyRule(const ParamSpec& p, const RefitTopology& topo,
                 const PrecisionOptions& o, const FormatRule& r,
                 ParamFormat& f) {
  f.kind = r.kind;
  if (r.kind == FormatKind::kPlain) {
    if (!IsCastable(p.dtype) || !IsCastable(r.dtype)) {
      return Bad(p, "cannot cast " + std::string(DTypeName(p.dtype)) + " to " +
                        std::string(DTypeName(r.dtype)) +
                        " (casts are between F32, BF16 and F16)");
    }
    f.dtype = r.dtype;
    f.side = o.cast_on;
    return OkStatus();
  }
  if (!IsCastable(p.dtype)) {
    return Bad(p, "cannot quantise a " + std::string(DTypeName(p.dtype)) +
                      " source (F32, BF16 or F16 only)");
  }
  f.dtype = DType::kF8E4M3;
  return r.kind == FormatKind::kFp8Block ? ResolveFp8(p, topo, o, f)
                                         : ResolveMxfp8(p, topo, o, f);
}

// A source parameter stored as block FP8 travels as it is: FP8 data plus the
// scales of its blocks, which every shard on both sides must hold whole.
Result<ParamFormat> ResolveKeptFp8(const ParamSpec& p,
                                   const RefitTopology& topo,
                                   const PrecisionOptions& o) {
  const FormatRule* rule = LastMatch(o, p);
  const bool reblock = rule != nullptr && rule->kind == FormatKind::kFp8Block &&
                       (o.fp8.block.rows != o.kept_fp8_block.rows ||
                        o.fp8.block.cols != o.kept_fp8_block.cols ||
                        o.fp8.scale_format != quant::BlockScaleFormat::kF32);
  if ((rule != nullptr && rule->kind != FormatKind::kFp8Block) || reblock) {
    return Bad(p,
               "the source is kept as block FP8 (--fp8-source keep) and "
               "cannot be cast, re-blocked or re-quantised; dequantise it "
               "instead");
  }
  ParamFormat f;
  f.kind = FormatKind::kFp8Block;
  f.src_dtype = f.dtype = DType::kF8E4M3;
  f.block = o.kept_fp8_block;
  f.side = ConvertSide::kSend;
  const int dim = SplitDim(p, topo.dst);
  const int64_t along = dim == 0 ? f.block.rows : f.block.cols;
  for (const auto& [layout, side] :
       {std::pair{&topo.src, "source"}, std::pair{&topo.dst, "destination"}}) {
    if (SplitDim(p, *layout) != dim ||
        !ShardsHoldWholeBlocks(p, *layout, along) ||
        !PartsAligned(p, dim, along)) {
      return Bad(p, std::string("the source is kept as block FP8 but the ") +
                        side + " TP cuts its " + std::to_string(along) +
                        "-element blocks; dequantise it instead "
                        "(--fp8-source dequantise)");
    }
  }
  return f;
}

// An engine layout's router weight (EngineRouterDType): cast to the dtype
// its engine holds, unless a rule names the router itself (a "*" rule means
// the model's weights, not the engine's router).
bool EngineCastsRouter(const ParamSpec& p, const PrecisionOptions& o,
                       std::optional<DType> engine_router) {
  if (!engine_router || !IsRouterWeight(p)) return false;
  const FormatRule* rule = LastMatch(o, p);
  return rule == nullptr || rule->pattern == "*";
}

Result<ParamFormat> ResolveParam(const ParamSpec& p, const RefitTopology& topo,
                                 const PrecisionOptions& o,
                                 std::optional<DType> engine_router) {
  if (p.dtype == DType::kF8E4M3) return ResolveKeptFp8(p, topo, o);
  ParamFormat f;
  f.src_dtype = f.dtype = p.dtype;
  if (EngineCastsRouter(p, o, engine_router)) {
    f.dtype = *engine_router;
    f.side = o.cast_on;
    return f;
  }
  if (const FormatRule* rule = LastMatch(o, p)) {
    REFIT_RETURN_IF_ERROR(ApplyRule(p, topo, o, *rule, f));
    return f;
  }
  const DType declared = o.dst_model_dtype.value_or(p.dtype);
  if (declared == p.dtype || !IsFloat(p.dtype)) return f;
  if (p.is_buffer) {
    f.harmonised = true;
    return f;
  }
  return Bad(p, "source is " + std::string(DTypeName(p.dtype)) +
                    ", the destination declares " +
                    std::string(DTypeName(declared)) +
                    " and no cast or quantisation rule covers it");
}

}  // namespace

PlanOptions FormatPlan::plan_options() const {
  PlanOptions o;
  for (size_t i = 0; i < params.size(); ++i) {
    const ParamFormat& f = params[i];
    if (f.kind == FormatKind::kPlain || f.side != ConvertSide::kRecv) continue;
    o.no_fanout.resize(params.size(), 0);
    o.no_fanout[i] = 1;  // quantised from the whole received shard
  }
  for (const ParamFormat& f : params) {
    if (f.recv_block > 1) {
      o.dst_block.resize(params.size(), 0);
      break;
    }
  }
  if (o.dst_block.empty()) return o;
  for (size_t i = 0; i < params.size(); ++i) {
    o.dst_block[i] = params[i].recv_block;
  }
  return o;
}

bool IsQuantisableWeight(const ParamSpec& p) {
  if (p.shape.size() != 2 || p.is_buffer || !IsFloat(p.dtype)) return false;
  const std::string& n = p.name;
  for (const char* skip :
       {"embedding.word_embeddings", "output_layer", "router.", "norm"}) {
    if (n.find(skip) != std::string::npos) return false;
  }
  return true;
}

Result<FormatPlan> ResolveFormats(const ModelSpec& spec,
                                  const RefitTopology& topo,
                                  const PrecisionOptions& options) {
  FormatPlan plan;
  plan.params.reserve(spec.params.size());
  const std::optional<DType> router =
      EngineRouterDType(spec, topo.dst.family());
  for (const ParamSpec& p : spec.params) {
    REFIT_ASSIGN_OR_RETURN(ParamFormat f,
                           ResolveParam(p, topo, options, router));
    if (f.src_dtype == DType::kF8E4M3) {
      ++plan.kept;
    } else if (f.kind != FormatKind::kPlain) {
      ++plan.quantised;
    } else if (f.dtype != f.src_dtype) {
      ++plan.casts;
    }
    plan.harmonised += f.harmonised;
    plan.send_side += f.converts() && f.side == ConvertSide::kSend &&
                      f.src_dtype != DType::kF8E4M3;
    plan.params.push_back(f);
  }
  return plan;
}

bool EngineLayoutCasts(const ModelSpec& spec, const RefitTopology& topo) {
  return EngineRouterDType(spec, topo.dst.family()).has_value();
}

FormatPlan IdentityFormats(const ModelSpec& spec) {
  FormatPlan plan;
  plan.params.resize(spec.params.size());
  for (size_t i = 0; i < spec.params.size(); ++i) {
    plan.params[i].dtype = plan.params[i].src_dtype = spec.params[i].dtype;
  }
  return plan;
}

ModelSpec DestinationSpec(const ModelSpec& spec, const FormatPlan& formats) {
  ModelSpec out = spec;
  for (size_t i = 0; i < out.params.size(); ++i) {
    out.params[i].dtype = formats.params[i].dtype;
  }
  return out;
}

Status ApplyDstDType(std::string_view value, PrecisionOptions& options) {
  if (value == "fp8-block" || value == "mxfp8") {
    options.rules.push_back(
        {"*", value == "mxfp8" ? FormatKind::kMxfp8 : FormatKind::kFp8Block,
         DType::kF8E4M3, false});
    return OkStatus();
  }
  const std::string torch = value == "bf16"  ? "bfloat16"
                            : value == "f16" ? "float16"
                            : value == "f32" ? "float32"
                                             : "";
  if (torch.empty()) {
    return InvalidArgument("unknown destination format '" + std::string(value) +
                           "' (bf16, f16, f32, fp8-block or mxfp8)");
  }
  REFIT_ASSIGN_OR_RETURN(DType d, ParseTorchDType(torch));
  options.dst_model_dtype = d;
  options.rules.push_back({"*", FormatKind::kPlain, d, false});
  return OkStatus();
}

PieceBox BoxOf(const ParamSpec& p, const Piece& piece, uint64_t esize) {
  const int64_t k = p.shape.size() == 2 ? p.shape[1] : 1;
  const auto run = static_cast<int64_t>(piece.run_bytes / esize);
  if (piece.nruns > 1) return {static_cast<int64_t>(piece.nruns), run};
  // A cut along dim 1 whose rows touch on both sides (the same TP cut, or
  // none) is planned as one run (MakePiece): every row of the tensor, each
  // run / N elements wide.
  if (p.shard == ShardKind::kRow && p.shape.size() == 2) {
    return {p.shape[0], run / p.shape[0]};
  }
  return {run / k, k};
}

uint64_t WireBytes(const ParamSpec& p, const ParamFormat& f,
                   const Piece& piece) {
  if (!f.converts() || f.side == ConvertSide::kRecv) return piece.bytes();
  const uint64_t es = DTypeSize(f.src_dtype);
  const uint64_t elements = piece.bytes() / es;
  if (f.kind == FormatKind::kPlain) return elements * DTypeSize(f.dtype);
  const PieceBox box = BoxOf(p, piece, es);
  return elements + BoxScaleBytes(f, box.rows, box.cols);
}

uint64_t PlanWireBytes(const ModelSpec& spec, const FormatPlan& formats,
                       const ReshardPlan& plan) {
  uint64_t total = 0;
  for (const TransferOp& op : plan.ops) {
    if (op.src_rank == op.dst_rank) continue;
    for (const Piece& piece : op.pieces) {
      total += WireBytes(spec.params[piece.dst_param],
                         formats.params[piece.dst_param], piece);
    }
  }
  return total;
}

Result<FormatRule> ParseCastRule(std::string_view rule) {
  const size_t eq = rule.rfind('=');
  const std::string_view name =
      eq == std::string_view::npos ? "" : rule.substr(eq + 1);
  PrecisionOptions parsed;
  if (eq == 0 || eq == std::string_view::npos ||
      (name != "bf16" && name != "f16" && name != "f32") ||
      !ApplyDstDType(name, parsed).ok()) {
    return InvalidArgument("cast rule '" + std::string(rule) +
                           "' is not PATTERN=bf16|f16|f32");
  }
  FormatRule r = parsed.rules.back();
  r.pattern = std::string(rule.substr(0, eq));
  r.buffers = true;
  return r;
}

}  // namespace refit
