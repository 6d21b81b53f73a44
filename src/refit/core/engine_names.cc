#include "refit/core/engine_names.h"

#include <string_view>

#include "refit/core/shard.h"

namespace refit {

namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.substr(s.size() - suffix.size()) == suffix;
}

// The HF name an engine gives HF tensor `i` of `p`. MTP layers (Megatron
// "mtp.layers.K."): vLLM's DeepSeekMTP keeps model.layers.N.{enorm, hnorm,
// eh_proj, shared_head.norm} and puts the transformer layer under
// model.layers.N.mtp_block. (deepseek_mtp.py _rewrite_spec_layer_name);
// SGLang's DeepseekModelNextN drops the layer index: model.enorm ... and
// model.decoder.* (deepseek_nextn.py load_weights).
std::string EngineHf(const ParamSpec& p, LayoutFamily family, size_t i = 0) {
  const std::string& hf = p.hf_names[i];
  if (p.name.rfind("mtp.", 0) != 0) return hf;
  const size_t start = hf.find("model.layers.");
  if (start == std::string::npos) return hf;
  const size_t end = hf.find('.', start + 13) + 1;  // after "model.layers.N."
  const bool block = p.name.find(".transformer_layer.") != std::string::npos;
  if (family == LayoutFamily::kVllm) {
    return block ? hf.substr(0, end) + "mtp_block." + hf.substr(end) : hf;
  }
  return hf.substr(0, start) + (block ? "model.decoder." : "model.") +
         hf.substr(end);
}

// vLLM's FusedMoE slot name of a routed expert's tensor: the HF prefix up to
// "experts." followed by w13_weight / w2_weight and the local expert index.
std::string EngineExpertName(const ParamSpec& p, const Layout& layout,
                             int rank) {
  const std::string hf = EngineHf(p, layout.family());
  const size_t at = hf.rfind("experts.");
  const int local = layout.LocalExpertSlot(layout.EpRank(rank), p.expert);
  const char* weight =
      p.shard == ShardKind::kGatedColumn ? "w13_weight" : "w2_weight";
  return hf.substr(0, at + 8) + weight + std::to_string(local);
}

std::string EngineName(const ParamSpec& p, const Layout& layout, int rank) {
  if (p.expert >= 0) return EngineExpertName(p, layout, rank);
  if (p.name == "output_layer.weight") return "lm_head.weight";
  const std::string hf = EngineHf(p, layout.family());
  if (p.hf_names.size() == 3) {  // QKV, any number of query groups
    return ReplaceNameComponent(hf, "q_proj", "qkv_proj");
  }
  if (p.shard == ShardKind::kGatedColumn && EndsWith(hf, "gate_proj.weight")) {
    return ReplaceNameComponent(hf, "gate_proj", "gate_up_proj");
  }
  return hf;
}

}  // namespace

std::string ReplaceNameComponent(const std::string& name, std::string_view from,
                                 std::string_view to) {
  const std::string key = "." + std::string(from) + ".";
  const size_t at = name.rfind(key);
  if (at == std::string::npos) return name;
  return name.substr(0, at + 1) + std::string(to) +
         name.substr(at + key.size() - 1);
}

std::vector<ShardPart> LocalTensorParts(const ParamSpec& p,
                                        const Layout& layout, int rank,
                                        int64_t local_rows) {
  switch (layout.family()) {
    case LayoutFamily::kMegatron:
      return {{LocalName(p, layout, rank), 0, local_rows}};
    case LayoutFamily::kVllm:
    case LayoutFamily::kSglang:
      return {{EngineName(p, layout, rank), 0, local_rows}};
    case LayoutFamily::kHf:
      break;
  }
  std::vector<ShardPart> parts;
  int64_t at = 0;
  for (size_t i = 0; i < p.hf_names.size(); ++i) {
    parts.push_back({p.hf_names[i], at, p.hf_rows[i]});
    at += p.hf_rows[i];
  }
  if (parts.size() == 1) parts[0].rows = local_rows;  // 1-D and padded rows
  return parts;
}

std::optional<FusedTensor> FusedTensorOf(const ParamSpec& p,
                                         const Layout& layout) {
  const LayoutFamily f = layout.family();
  if (f != LayoutFamily::kVllm && f != LayoutFamily::kSglang) {
    return std::nullopt;
  }
  const bool q = EndsWith(p.name, "self_attention.linear_q_down_proj.weight");
  const bool kv = EndsWith(p.name, "self_attention.linear_kv_down_proj.weight");
  if (!q && !kv) return std::nullopt;
  // kv_a_proj_with_mqa is fused only when the layer has a q LoRA (its
  // q_a_proj precedes it); FusedTensorOf of the kv part alone cannot see
  // that, so callers fuse a group only when all its members are present.
  const std::string hf = EngineHf(p, f);
  const std::string prefix = hf.substr(0, hf.rfind("self_attn.") + 10);
  const char* name = f == LayoutFamily::kVllm
                         ? "fused_qkv_a_proj.weight"
                         : "fused_qkv_a_proj_with_mqa.weight";
  return FusedTensor{prefix + name, q ? 0 : 1, 2};
}

bool IsRouterWeight(const ParamSpec& p) {
  constexpr std::string_view kRouter = "mlp.router.weight";
  return !p.is_buffer && p.name.size() >= kRouter.size() &&
         p.name.compare(p.name.size() - kRouter.size(), kRouter.size(),
                        kRouter) == 0;
}

std::optional<DType> EngineRouterDType(const ModelSpec& spec,
                                       LayoutFamily family) {
  const bool vllm = family == LayoutFamily::kVllm;
  if (!vllm && family != LayoutFamily::kSglang) return std::nullopt;
  const std::string& type = spec.model_type;
  if (type == "minimax_m2" || (vllm && type == "glm4_moe")) {
    return std::nullopt;
  }
  std::optional<DType> model, router;
  for (const ParamSpec& p : spec.params) {
    if (IsRouterWeight(p)) {
      router = p.dtype;
    } else if (!model && !p.dtype_fixed &&
               (p.dtype == DType::kBF16 || p.dtype == DType::kF16 ||
                p.dtype == DType::kF32)) {
      model = p.dtype;
    }
  }
  if (!router || !model || *router == *model) return std::nullopt;
  return model;
}

}  // namespace refit
