// The names a rank's tensors have in each layout family (LayoutFamily):
// Megatron's local names, the per-rank tensors vLLM / SGLang hold after
// loading, or whole Hugging Face tensors. Rules and their engine sources:
// docs/LAYOUTS.md §2.
#ifndef REFIT_CORE_ENGINE_NAMES_H_
#define REFIT_CORE_ENGINE_NAMES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "refit/core/layout.h"
#include "refit/core/model_spec.h"

namespace refit {

/// One tensor holding rows [row_begin, row_begin + rows) (dim 0) of a
/// parameter's local shard.
struct ShardPart {
  std::string name;
  int64_t row_begin = 0;
  int64_t rows = 0;
};

/// The tensors that hold parameter `p`'s local shard on `rank` of `layout`
/// (local shard rows `local_rows`), in row order:
///  - megatron: one, LocalName (local layer and expert indices);
///  - vllm / sglang: one, the engine's name with the global layer index:
///    the HF name of the parameter's first HF tensor with QKV as
///    "self_attn.qkv_proj.{weight,bias}" and a gated MLP as
///    "gate_up_proj.weight" (merged linears); a routed expert as its slot of
///    the layer's stacked FusedMoE tensor, "<P>.experts.w13_weight<i>" (fc1)
///    or "<P>.experts.w2_weight<i>" (fc2), i the local expert index, so that
///    stacking drops the index (ExpertBinding::kStacked); a tied output
///    layer on the last stage as "lm_head.weight";
///  - hf: one per HF tensor of the parameter (q_proj, k_proj, v_proj of a
///    QKV; gate_proj, up_proj of a gated MLP), global layer and expert
///    indices, each holding its HF tensor's rows (tp = 1).
std::vector<ShardPart> LocalTensorParts(const ParamSpec& p,
                                        const Layout& layout, int rank,
                                        int64_t local_rows);

/// `name` with its last component ".from." replaced by ".to."
/// ("...self_attn.q_proj.weight" -> "...self_attn.qkv_proj.weight"); `name`
/// itself when it has none.
std::string ReplaceNameComponent(const std::string& name, std::string_view from,
                                 std::string_view to);

/// A tensor made of the whole local shards of several parameters, one after
/// another along dim 0.
struct FusedTensor {
  std::string name;
  int member = 0;   ///< this parameter's place in it
  int members = 0;  ///< parameters fused
};

/// The fused tensor holding parameter `p` in `layout`'s family, if any:
/// DeepSeek MLA with a q LoRA rank fuses linear_q_down_proj (q_a_proj) and
/// linear_kv_down_proj (kv_a_proj_with_mqa) into vLLM's
/// "self_attn.fused_qkv_a_proj.weight" (models/deepseek_v2.py,
/// MergedReplicatedLinear) or SGLang's
/// "self_attn.fused_qkv_a_proj_with_mqa.weight" (models/deepseek_v2.py).
std::optional<FusedTensor> FusedTensorOf(const ParamSpec& p,
                                         const Layout& layout);

/// True for a MoE router weight ("...mlp.router.weight", HF
/// "mlp.gate.weight"), which Megatron keeps in F32 (dtype_fixed).
bool IsRouterWeight(const ParamSpec& p);

/// The dtype `family`'s engine allocates MoE router weights in for models
/// of `spec`, when it differs from the spec's (the trainer's F32); unset for
/// megatron and hf layouts, for models without routers, and where the
/// engine keeps F32. vLLM: the model dtype (ReplicatedLinear / GateLinear
/// without params_dtype: qwen2_moe.py, qwen3_moe.py, mixtral.py, olmoe.py,
/// deepseek_v2.py) except F32 for glm4_moe (`nn.Linear(...,
/// dtype=torch.float32)`, glm4_moe.py) and minimax_m2
/// (`params_dtype=torch.float32`, minimax_m2.py). SGLang: the model dtype
/// (ReplicatedLinear, deepseek_v2.py and glm4_moe.py MoEGate) except F32 for
/// minimax_m2. The model dtype is that of the spec's other float weights.
/// Both engines keep e_score_correction_bias in F32, as Megatron does.
std::optional<DType> EngineRouterDType(const ModelSpec& spec,
                                       LayoutFamily family);

}  // namespace refit

#endif  // REFIT_CORE_ENGINE_NAMES_H_
