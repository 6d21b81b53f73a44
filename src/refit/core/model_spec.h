// The Megatron-core parameter list of a model, built from a Hugging Face
// config.json.
//
// Every parameter is described by its *logical global* tensor: the TP=1,
// unpadded Megatron tensor, whose element count equals the Hugging Face
// tensors it is made of. Layouts (layout.h) and shard geometry (shard.h) cut
// this logical tensor; padding (vocabulary) only ever exists in local shards.
// Names, split dimensions and the QKV / [gate; up] fusions follow
// ../shared/reference/layouts.md §1 (Megatron-LM gpt_layer_specs.py,
// attention.py, mlp.py, moe/experts.py, multi_latent_attention.py).
#ifndef REFIT_CORE_MODEL_SPEC_H_
#define REFIT_CORE_MODEL_SPEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "refit/core/dtype.h"
#include "refit/core/status.h"

namespace refit {

/// How a parameter is cut over its tensor-parallel group.
enum class ShardKind : uint8_t {
  kReplicated,   ///< every TP rank holds the whole tensor (norms, router, MLA
                 ///< down projections)
  kColumn,       ///< even split of dim 0 (ColumnParallelLinear, QKV rows)
  kRow,          ///< even split of dim 1 (RowParallelLinear)
  kGatedColumn,  ///< dim 0 is [gate; up]; TP rank r holds [gate_r; up_r]
                 ///< (mlp.py, stride 2)
  kVocab,  ///< dim 0 padded to a multiple of make_vocab_size_divisible_by*TP,
           ///< then split
};

/// "replicated", "column", "row", "gated_column" or "vocab".
std::string_view ShardKindName(ShardKind kind);

/// Which tensor-parallel group cuts the parameter.
enum class TpGroup : uint8_t {
  kDense,   ///< pg.tp (attention, dense MLP, shared experts, embedding)
  kExpert,  ///< pg.expt_tp, of size ETP (routed experts)
};

/// Where in the pipeline a parameter lives.
enum class Placement : uint8_t {
  kLayer,       ///< inside decoder layer `layer`: on the stage that owns it
  kFirstStage,  ///< embedding: pipeline stage 0
  kLastStage,   ///< final norm and output layer: the last pipeline stage
};

/// One Megatron-core parameter or persistent buffer.
struct ParamSpec {
  /// Megatron name with the *global* layer index and, for routed experts, the
  /// global expert index, e.g.
  /// "decoder.layers.3.mlp.experts.linear_fc1.weight7".
  std::string name;
  Placement placement = Placement::kLayer;
  int layer = -1;   ///< global decoder layer (0-based), -1 if not in a layer
  int expert = -1;  ///< global routed-expert index, -1 if not a routed expert
  /// Logical global shape (TP=1, unpadded), row-major, Megatron order.
  std::vector<int64_t> shape;
  DType dtype = DType::kBF16;
  /// True when the dtype is fixed by Megatron regardless of the checkpoint's
  /// (router.weight and router.expert_bias are fp32: moe/router.py).
  bool dtype_fixed = false;
  ShardKind shard = ShardKind::kReplicated;
  TpGroup tp_group = TpGroup::kDense;
  bool is_buffer = false;  ///< persistent buffer (router.expert_bias)
  /// vLLM and SGLang hold it whole although Megatron splits it (an MTP
  /// layer's eh_proj: nn.Linear in vLLM deepseek_mtp.py and SGLang
  /// deepseek_nextn.py, ColumnParallelLinear in Megatron).
  bool engine_replicated = false;
  /// The Hugging Face tensors this parameter is made of, in order. Their rows
  /// (dim 0) are interleaved in `interleave_groups` groups: group g of the
  /// logical tensor is [rows g of hf[0]; rows g of hf[1]; ...], each HF tensor
  /// contributing hf_rows[i] / interleave_groups rows per group. One tensor
  /// and one group is a plain copy; groups == 1 is a concatenation ([gate;
  /// up]); groups == num_query_groups with {q, k, v} is Megatron's QKV
  /// interleave (layouts.md §1.3). All other dims equal `shape`'s.
  std::vector<std::string> hf_names;
  std::vector<int64_t> hf_rows;  ///< dim 0 of each HF tensor (1-D: its length)
  int64_t interleave_groups = 1;
  /// Parameters with the same data_id hold the same logical data (a tied
  /// output_layer.weight and embedding.word_embeddings.weight). Distinct
  /// otherwise; equals the index of the first parameter holding that data.
  uint32_t data_id = 0;

  int64_t NumElements() const;
};

/// The whole model: global sizes plus every parameter in a fixed order
/// (embedding, layers in order, final norm, output layer).
struct ModelSpec {
  std::string architecture;  ///< config "architectures"[0]
  std::string model_type;    ///< config "model_type"
  int num_layers = 0;
  /// Multi-token prediction layers in params (ModelSpecOptions::mtp), after
  /// the output layer: "mtp.layers.K.*" on the last pipeline stage.
  int mtp_layers = 0;
  int num_experts = 0;  ///< routed experts per MoE layer; 0 for dense models
  int num_attention_heads = 0;
  int num_query_groups = 0;  ///< KV heads
  int64_t hidden_size = 0;
  int64_t vocab_size = 0;
  bool tied_embeddings = false;
  int make_vocab_size_divisible_by = 128;
  /// True when the config names the dtype (torch_dtype / dtype); otherwise
  /// the checkpoint's dtype is adopted by BindCheckpointDType.
  bool dtype_from_config = false;
  /// Block extents {rows, cols} of the checkpoint's block-FP8 weights:
  /// config quantization_config.weight_block_size when its quant_method is
  /// "fp8" (DeepSeek-V3 / Kimi-K2, layouts.md §4.1); unset when the config
  /// names no block FP8. Whether a tensor is quantised is decided by its
  /// checkpoint dtype (BindCheckpoint), not by this field.
  std::optional<std::pair<int64_t, int64_t>> fp8_block;
  std::vector<ParamSpec> params;

  /// Sum of HF element counts, each logical tensor counted once (tied output
  /// layers are not counted again). Equals the totals of param_counts.md.
  int64_t TotalParams() const;
};

/// What the spec includes beyond the main model.
struct ModelSpecOptions {
  /// DeepSeek-V3-style multi-token prediction layers
  /// (num_nextn_predict_layers): Megatron's "mtp.layers.K." enorm, hnorm,
  /// eh_proj ([H, 2H], column-parallel), transformer_layer.* (MLA and MoE,
  /// as a decoder layer) and final_layernorm, from HF
  /// model.layers.(num_hidden_layers + K).*; refit with the main model so
  /// that speculative decoding keeps its acceptance after each step.
  bool mtp = false;
};

/// Builds the spec from the text of a HF config.json. Supported:
/// LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM,
/// MixtralForCausalLM, OlmoeForCausalLM, DeepseekV2ForCausalLM,
/// DeepseekV3ForCausalLM (incl. Kimi-K2), Glm4MoeForCausalLM,
/// MiniMaxM2ForCausalLM, MllamaForConditionalGeneration (text decoder).
/// MTP layers (num_nextn_predict_layers) are included only with
/// options.mtp.
/// Errors: kInvalidArgument for bad JSON or a missing/ill-typed field (named);
/// kUnimplemented for any other architecture (named), and for MTP layers of
/// a model without multi-latent attention.
Result<ModelSpec> ModelSpecFromConfigJson(std::string_view config_json,
                                          const ModelSpecOptions& options = {});

/// Maps every HF tensor name of the spec to (index into params, index into
/// that parameter's hf_names). A tied model maps the embedding's HF name to
/// the embedding parameter only.
std::unordered_map<std::string, std::pair<size_t, size_t>> HfNameIndex(
    const ModelSpec& spec);

/// Sets the dtype of every parameter whose dtype is not fixed, for configs that
/// name no dtype. No-op when dtype_from_config is true.
void BindCheckpointDType(ModelSpec& spec, DType dtype);

}  // namespace refit

#endif  // REFIT_CORE_MODEL_SPEC_H_
