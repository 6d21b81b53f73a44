// ModelSpecFromConfigJson: a table of architecture families (kFamilies) says
// what a config's layers hold; Builder emits their Megatron parameters.
#include "refit/core/model_spec.h"

#include <cstdint>
#include <exception>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace refit {

namespace {

using Json = nlohmann::json;

// A config-dependent feature: always `on` when `key` is empty; otherwise on
// when the field equals `value` (if given) or is true, and `on` when absent.
struct Feature {
  std::string_view key = {};
  bool on = false;
  std::string_view value = {};
};
constexpr Feature kAlways{.on = true};
constexpr Feature kNever{};

enum class QkNorm : uint8_t { kNone, kPerHead, kFullWidth };

// Which decoder layers hold a MoE block instead of a dense MLP.
enum class MoeRule : uint8_t {
  kNone,         // dense model
  kAll,          // every layer (Mixtral, OLMoE, MiniMax-M2)
  kFirstKDense,  // L >= first_k_dense_replace, L % moe_layer_freq == 0
  kSparseStep,   // (L+1) % decoder_sparse_step == 0, not in mlp_only_layers
};

// HF names of a MoE block, relative to "model.layers.L.".
struct MoeNames {
  std::string_view router;
  std::string_view expert_bias;
  std::string_view experts;  // followed by "<e>." and gate / up / down
  std::string_view gate;
  std::string_view up;
  std::string_view down;
};
constexpr MoeNames kMlpMoe = {
    "mlp.gate.weight", "mlp.gate.e_score_correction_bias",
    "mlp.experts.",    "gate_proj.weight",
    "up_proj.weight",  "down_proj.weight"};
constexpr MoeNames kBlockSparseMoe = {
    "block_sparse_moe.gate.weight",
    "block_sparse_moe.e_score_correction_bias",
    "block_sparse_moe.experts.",
    "w1.weight",
    "w3.weight",
    "w2.weight"};

// What distinguishes one supported architecture from another.
struct Family {
  std::string_view architecture;
  bool mla = false;              // DeepSeek multi-latent attention
  bool cross_attention = false;  // Mllama: cross_attention_layers, HF prefix
  Feature qkv_bias = {"attention_bias"};
  QkNorm qk_norm = QkNorm::kNone;
  Feature qk_norm_on = kAlways;
  MoeRule moe = MoeRule::kNone;
  bool ffn_is_expert_width = false;  // intermediate_size is the expert width
  const MoeNames* moe_names = &kMlpMoe;
  Feature expert_bias = kNever;
  // Full-width QK norms that vLLM and SGLang hold whole (OLMoE: they
  // all-gather q and k before the norm, olmoe.py OlmoeAttention); MiniMax-M2
  // keeps them cut by TP (minimax_m2.py MiniMaxText01RMSNormTP).
  bool qk_norm_whole_in_engines = false;
  // DeepSeek-V3-style MTP layers (num_nextn_predict_layers): DeepSeek's
  // (deepseek_mtp.py) and GLM-4.x MoE's (glm4_moe_mtp.py: the same layer
  // around its own decoder layer).
  bool mtp = false;
};

constexpr Family kFamilies[] = {
    {.architecture = "LlamaForCausalLM"},
    {.architecture = "Qwen2ForCausalLM", .qkv_bias = kAlways},
    {.architecture = "Qwen3ForCausalLM", .qk_norm = QkNorm::kPerHead},
    {.architecture = "Qwen3MoeForCausalLM",
     .qk_norm = QkNorm::kPerHead,
     .moe = MoeRule::kSparseStep},
    {.architecture = "MixtralForCausalLM",
     .moe = MoeRule::kAll,
     .ffn_is_expert_width = true,
     .moe_names = &kBlockSparseMoe},
    {.architecture = "OlmoeForCausalLM",
     .qk_norm = QkNorm::kFullWidth,
     .moe = MoeRule::kAll,
     .ffn_is_expert_width = true,
     .qk_norm_whole_in_engines = true},
    {.architecture = "DeepseekV2ForCausalLM",
     .mla = true,
     .moe = MoeRule::kFirstKDense,
     .expert_bias = {"topk_method", false, "noaux_tc"},
     .mtp = true},
    {.architecture = "DeepseekV3ForCausalLM",
     .mla = true,
     .moe = MoeRule::kFirstKDense,
     .expert_bias = {"topk_method", false, "noaux_tc"},
     .mtp = true},
    {.architecture = "Glm4MoeForCausalLM",
     .qk_norm = QkNorm::kPerHead,
     .qk_norm_on = {"use_qk_norm"},
     .moe = MoeRule::kFirstKDense,
     .expert_bias = kAlways,
     .mtp = true},
    {.architecture = "MiniMaxM2ForCausalLM",
     .qk_norm = QkNorm::kFullWidth,
     .qk_norm_on = {"use_qk_norm", true},
     .moe = MoeRule::kAll,
     .ffn_is_expert_width = true,
     .moe_names = &kBlockSparseMoe,
     .expert_bias = {"use_routing_bias"}},
    {.architecture = "MllamaForConditionalGeneration", .cross_attention = true},
};

// Families whose checkpoints hold all experts of a layer in fused 3-D tensors.
constexpr std::string_view kFusedExpertArchitectures[] = {
    "GptOssForCausalLM", "GraniteMoeForCausalLM", "Llama4ForCausalLM",
    "Qwen3_5MoeForConditionalGeneration"};

Status ConfigError(std::string message) {
  return InvalidArgument("config.json: " + std::move(message));
}

// Typed reads of config fields. The first error sticks; reads after it (and
// the failing read) return harmless placeholder values.
class Fields {
 public:
  explicit Fields(const Json& json) : json_(json) {}

  const Status& status() const { return status_; }
  void Fail(std::string message) {
    if (status_.ok()) status_ = ConfigError(std::move(message));
  }

  // Present and not null.
  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  // A required integer >= 1.
  int64_t Int(std::string_view key) {
    const Json* v = Find(key);
    if (v == nullptr) {
      Fail("missing field '" + std::string(key) + "'");
      return 1;
    }
    return CheckInt(key, *v, 1);
  }

  // An optional integer >= min; `absent` when missing or null.
  int64_t Int(std::string_view key, int64_t absent, int64_t min = 0) {
    const Json* v = Find(key);
    return v == nullptr ? absent : CheckInt(key, *v, min);
  }

  bool Bool(std::string_view key, bool absent) {
    const Json* v = Find(key);
    if (v == nullptr) return absent;
    if (v->is_boolean()) return v->get<bool>();
    Fail("field '" + std::string(key) + "' must be a boolean");
    return absent;
  }

  // "" when missing or null.
  std::string Str(std::string_view key) {
    const Json* v = Find(key);
    if (v == nullptr) return "";
    if (v->is_string()) return v->get<std::string>();
    Fail("field '" + std::string(key) + "' must be a string");
    return "";
  }

  bool Enabled(const Feature& f) {
    if (f.key.empty()) return f.on;
    if (!f.value.empty()) return Str(f.key) == f.value;
    return Bool(f.key, f.on);
  }

  // The layers listed in an optional integer array, as a mask of `layers`.
  std::vector<bool> LayerMask(std::string_view key, int64_t layers) {
    std::vector<bool> mask(layers, false);
    const Json* v = Find(key);
    if (v == nullptr) return mask;
    if (!v->is_array()) {
      Fail("field '" + std::string(key) + "' must be an array");
      return mask;
    }
    for (const Json& item : *v) {
      const int64_t layer = CheckInt(key, item, 0);
      if (layer < layers) {
        mask[layer] = true;
      } else {
        Fail("field '" + std::string(key) + "' names layer " +
             std::to_string(layer) + " of " + std::to_string(layers));
      }
    }
    return mask;
  }

 private:
  const Json* Find(std::string_view key) const {
    const auto it = json_.find(key);
    return it == json_.end() || it->is_null() ? nullptr : &*it;
  }

  int64_t CheckInt(std::string_view key, const Json& v, int64_t min) {
    constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
    if (v.is_number_integer()) {
      const bool too_big = v.is_number_unsigned() && v.get<uint64_t>() > kMax;
      const int64_t n = too_big ? kMax + 1 : v.get<int64_t>();
      if (n >= min && n <= kMax) return n;
    }
    Fail("field '" + std::string(key) + "' must be an integer in [" +
         std::to_string(min) + ", " + std::to_string(kMax) + "]");
    return min > 0 ? min : 1;
  }

  const Json& json_;
  Status status_;
};

// The sizes and switches the parameter list depends on.
struct Dims {
  int64_t hidden = 0, vocab = 0, layers = 0, heads = 0, groups = 0;
  int64_t head_dim = 0, ffn = 0;
  bool tied = false, qkv_bias = false, qk_norm = false;
  // MoE.
  int64_t experts = 0, expert_ffn = 0, shared = 0;
  bool expert_bias = false;
  std::vector<bool> moe;  // per layer
  // MLA (q_lora == 0: no q LoRA).
  int64_t q_lora = 0, kv_lora = 0, qk_nope = 0, qk_rope = 0, v_head = 0;
  // Mllama.
  std::vector<bool> cross;  // per layer
  // DeepSeek-V3 multi-token prediction layers (ModelSpecOptions::mtp).
  int64_t mtp = 0;
};

int64_t ExpertCount(Fields& c) {
  for (const char* key :
       {"num_experts", "num_local_experts", "n_routed_experts"}) {
    if (c.Has(key)) return c.Int(key);
  }
  c.Fail(
      "missing field 'num_experts' (or num_local_experts, n_routed_experts)");
  return 1;
}

std::vector<bool> MoeMask(MoeRule rule, Fields& c, int64_t layers) {
  std::vector<bool> moe(layers, rule == MoeRule::kAll);
  if (rule == MoeRule::kFirstKDense) {
    const int64_t first = c.Int("first_k_dense_replace", 0);
    const int64_t freq = c.Int("moe_layer_freq", 1, 1);
    for (int64_t l = first; l < layers; ++l) moe[l] = l % freq == 0;
  } else if (rule == MoeRule::kSparseStep) {
    const int64_t step = c.Int("decoder_sparse_step", 1, 1);
    const std::vector<bool> dense = c.LayerMask("mlp_only_layers", layers);
    for (int64_t l = 0; l < layers; ++l) {
      moe[l] = !dense[l] && (l + 1) % step == 0;
    }
  }
  return moe;
}

void ReadMoe(const Family& f, Fields& c, Dims& d) {
  d.experts = ExpertCount(c);
  d.expert_ffn = f.ffn_is_expert_width ? d.ffn : c.Int("moe_intermediate_size");
  d.shared = c.Int("n_shared_experts", 0);
  d.expert_bias = c.Enabled(f.expert_bias);
}

void ReadMla(Fields& c, Dims& d) {
  d.q_lora = c.Int("q_lora_rank", 0, 1);
  d.kv_lora = c.Int("kv_lora_rank");
  d.qk_nope = c.Int("qk_nope_head_dim");
  d.qk_rope = c.Int("qk_rope_head_dim");
  d.v_head = c.Int("v_head_dim");
}

// Bounds the parameter list: up to kParamsPerLayer entries per layer plus two
// per routed expert and layer (Kimi-K2: 61 x (12 + 2 x 384), about 48k).
// Found while fuzzing (libFuzzer out-of-memory): the former bound (2^22 layers
// x experts) let a 1 kB config.json allocate 12 GB (4M dense layers).
constexpr int64_t kParamsPerLayer = 12;
constexpr int64_t kMaxParams = int64_t{1} << 19;
// Bounds the model's element count (Kimi-K2 has about 2^40), so that shapes,
// element counts and byte sizes never overflow int64.
constexpr int64_t kMaxModelElements = int64_t{1} << 50;

Dims ReadDims(const Family& f, Fields& c) {
  Dims d;
  d.hidden = c.Int("hidden_size");
  d.vocab = c.Int("vocab_size");
  d.layers = c.Int("num_hidden_layers");
  d.heads = c.Int("num_attention_heads");
  d.groups = c.Int("num_key_value_heads", d.heads, 1);
  d.head_dim = c.Int("head_dim", d.hidden / d.heads, 1);
  d.ffn = c.Int("intermediate_size");
  d.tied = c.Bool("tie_word_embeddings", false);
  d.qkv_bias = c.Enabled(f.qkv_bias);
  d.qk_norm = f.qk_norm != QkNorm::kNone && c.Enabled(f.qk_norm_on);
  if (d.heads % d.groups != 0) {
    c.Fail("num_attention_heads " + std::to_string(d.heads) +
           " is not a multiple of num_key_value_heads " +
           std::to_string(d.groups));
  }
  // Found by fuzzing: without head_dim, more heads than hidden_size gave
  // head_dim 0 and zero-row QKV tensors (MLA uses its own head sizes).
  if (d.head_dim == 0 && !f.mla) {
    c.Fail("no field 'head_dim' and num_attention_heads " +
           std::to_string(d.heads) + " exceeds hidden_size " +
           std::to_string(d.hidden) + " (head_dim would be 0)");
  }
  if (f.moe != MoeRule::kNone) ReadMoe(f, c, d);
  if (f.mla) ReadMla(c, d);
  // Divided, not multiplied: experts up to INT32_MAX would overflow.
  if (d.layers > kMaxParams / (kParamsPerLayer + 2 * d.experts)) {
    c.Fail("num_hidden_layers " + std::to_string(d.layers) + " with " +
           std::to_string(d.experts) + " experts: more than " +
           std::to_string(kMaxParams) + " parameters");
    return d;
  }
  d.moe = MoeMask(f.moe, c, d.layers);
  d.cross = f.cross_attention ? c.LayerMask("cross_attention_layers", d.layers)
                              : std::vector<bool>(d.layers, false);
  return d;
}

Result<const Family*> FindFamily(const Json& root) {
  const auto it = root.find("architectures");
  if (it == root.end()) return ConfigError("missing field 'architectures'");
  if (!it->is_array() || it->empty() || !(*it)[0].is_string()) {
    return ConfigError(
        "field 'architectures' must be a non-empty string array");
  }
  const std::string& arch = (*it)[0].get_ref<const std::string&>();
  for (std::string_view fused : kFusedExpertArchitectures) {
    if (arch == fused) {
      return Unimplemented("architecture '" + arch +
                           "' is not supported yet: fused expert tensors");
    }
  }
  for (const Family& family : kFamilies) {
    if (arch == family.architecture) return &family;
  }
  return Unimplemented("unsupported architecture '" + arch + "'");
}

// The dtype named by "torch_dtype" or "dtype", in the text config or at the
// top level; nullopt when the config names none.
Result<std::optional<DType>> ConfigDType(const Json& text, const Json& root) {
  for (const Json* json : {&text, &root}) {
    for (const char* key : {"torch_dtype", "dtype"}) {
      const auto it = json->find(key);
      if (it == json->end() || it->is_null()) continue;
      if (!it->is_string()) {
        return ConfigError("field '" + std::string(key) + "' must be a string");
      }
      const Result<DType> dtype = ParseTorchDType(it->get<std::string>());
      if (!dtype.ok()) return ConfigError(dtype.status().message());
      return std::optional<DType>(*dtype);
    }
  }
  return std::optional<DType>();
}

// One HF tensor of a parameter: its name suffix and dim 0.
struct Part {
  std::string hf;
  int64_t rows;
};

// Appends the parameters of a family, in order, to spec.params.
class Builder {
 public:
  Builder(const Family& family, const Dims& dims, std::string hf_root,
          DType dtype, ModelSpec& spec)
      : f_(family),
        d_(dims),
        hf_root_(std::move(hf_root)),
        dtype_(dtype),
        spec_(spec) {}

  // Errors: kInvalidArgument naming the first tensor whose rows or elements
  // would overflow or exceed kMaxModelElements (config sizes up to INT32_MAX
  // make QKV rows such as heads x head_dim x 3 overflow int64).
  Status Build() {
    spec_.params.reserve(3 + d_.layers * (20 + 2 * d_.experts));
    Global(Placement::kFirstStage);
    const int64_t embed_rows = d_.vocab + (f_.cross_attention ? 8 : 0);
    Add("embedding.word_embeddings.weight", ShardKind::kVocab,
        {{"model.embed_tokens.weight", embed_rows}}, d_.hidden);
    for (int64_t l = 0; l < d_.layers; ++l) Layer(static_cast<int>(l));
    Global(Placement::kLastStage);
    Norm("decoder.final_layernorm.weight", "model.norm.weight", d_.hidden);
    ParamSpec& out = Add(
        "output_layer.weight", ShardKind::kVocab,
        {{d_.tied ? "model.embed_tokens.weight" : "lm_head.weight", d_.vocab}},
        d_.hidden);
    if (d_.tied) out.data_id = 0;
    for (int64_t k = 0; k < d_.mtp; ++k) Mtp(static_cast<int>(k));
    return status_;
  }

 private:
  void Global(Placement placement) {
    placement_ = placement;
    layer_ = -1;
    mg_.clear();
    hf_ = hf_root_;
  }

  void Layer(int l) {
    placement_ = Placement::kLayer;
    layer_ = l;
    mg_ = "decoder.layers." + std::to_string(l) + ".";
    hf_ = hf_root_ + "model.layers." + std::to_string(l) + ".";
    if (d_.cross[l]) {
      CrossAttention();
    } else if (f_.mla) {
      MultiLatentAttention();
    } else {
      SelfAttention();
    }
    if (d_.moe[l]) {
      Moe();
    } else {
      DenseMlp();
    }
  }

  // Megatron name mg_ + name; HF names hf_ + part.hf; shape {rows} when
  // cols == 0, else {rows, cols}, rows summed over the parts.
  ParamSpec& Add(std::string_view name, ShardKind shard,
                 std::initializer_list<Part> parts, int64_t cols,
                 int64_t groups = 1) {
    ParamSpec& p = spec_.params.emplace_back();
    p.name = mg_;
    p.name += name;
    p.placement = placement_;
    p.layer = layer_;
    p.dtype = dtype_;
    p.shard = shard;
    int64_t rows = 0;
    bool overflow = false;
    p.hf_names.reserve(parts.size());
    p.hf_rows.reserve(parts.size());
    for (const Part& part : parts) {
      p.hf_names.push_back(hf_ + part.hf);
      p.hf_rows.push_back(part.rows);
      overflow |= __builtin_add_overflow(rows, part.rows, &rows);
    }
    p.shape = cols == 0 ? std::vector<int64_t>{rows}
                        : std::vector<int64_t>{rows, cols};
    CountElements(p.name, rows, cols, overflow);
    p.interleave_groups = groups;
    p.data_id = static_cast<uint32_t>(spec_.params.size() - 1);
    return p;
  }

  // Adds rows x cols (cols == 0: rows) to the model's element count; the
  // first tensor that overflows it or passes kMaxModelElements fails Build.
  void CountElements(const std::string& name, int64_t rows, int64_t cols,
                     bool overflow) {
    int64_t n = rows;
    overflow = overflow || (cols > 0 && __builtin_mul_overflow(n, cols, &n)) ||
               __builtin_add_overflow(elements_, n, &elements_) ||
               elements_ > kMaxModelElements;
    if (overflow && status_.ok()) {
      status_ = ConfigError("tensor " + name +
                            ": sizes too large (the model would exceed " +
                            std::to_string(kMaxModelElements) + " elements)");
    }
  }

  ParamSpec& Norm(std::string_view name, std::string hf, int64_t n,
                  ShardKind shard = ShardKind::kReplicated) {
    return Add(name, shard, {{std::move(hf), n}}, 0);
  }

  ParamSpec& AddF32(std::string_view name, std::string hf, int64_t rows,
                    int64_t cols) {
    ParamSpec& p =
        Add(name, ShardKind::kReplicated, {{std::move(hf), rows}}, cols);
    p.dtype = DType::kF32;
    p.dtype_fixed = true;
    return p;
  }

  void SelfAttention() {
    const int64_t q = d_.heads * d_.head_dim, kv = d_.groups * d_.head_dim;
    Norm("self_attention.linear_qkv.layer_norm_weight",
         "input_layernorm.weight", d_.hidden);
    Add("self_attention.linear_qkv.weight", ShardKind::kColumn,
        {{"self_attn.q_proj.weight", q},
         {"self_attn.k_proj.weight", kv},
         {"self_attn.v_proj.weight", kv}},
        d_.hidden, d_.groups);
    if (d_.qkv_bias) {
      Add("self_attention.linear_qkv.bias", ShardKind::kColumn,
          {{"self_attn.q_proj.bias", q},
           {"self_attn.k_proj.bias", kv},
           {"self_attn.v_proj.bias", kv}},
          0, d_.groups);
    }
    if (d_.qk_norm && f_.qk_norm == QkNorm::kPerHead) {
      Norm("self_attention.q_layernorm.weight", "self_attn.q_norm.weight",
           d_.head_dim);
      Norm("self_attention.k_layernorm.weight", "self_attn.k_norm.weight",
           d_.head_dim);
    } else if (d_.qk_norm) {  // full width, split by heads
      Norm("self_attention.q_layernorm.weight", "self_attn.q_norm.weight", q,
           ShardKind::kColumn)
          .engine_replicated = f_.qk_norm_whole_in_engines;
      Norm("self_attention.k_layernorm.weight", "self_attn.k_norm.weight", kv,
           ShardKind::kColumn)
          .engine_replicated = f_.qk_norm_whole_in_engines;
    }
    Add("self_attention.linear_proj.weight", ShardKind::kRow,
        {{"self_attn.o_proj.weight", d_.hidden}}, q);
  }

  void MultiLatentAttention() {
    const int64_t q_rows = d_.heads * (d_.qk_nope + d_.qk_rope);
    Norm("input_layernorm.weight", "input_layernorm.weight", d_.hidden);
    if (d_.q_lora > 0) {
      Add("self_attention.linear_q_down_proj.weight", ShardKind::kReplicated,
          {{"self_attn.q_a_proj.weight", d_.q_lora}}, d_.hidden);
      Norm("self_attention.linear_q_up_proj.layer_norm_weight",
           "self_attn.q_a_layernorm.weight", d_.q_lora);
      Add("self_attention.linear_q_up_proj.weight", ShardKind::kColumn,
          {{"self_attn.q_b_proj.weight", q_rows}}, d_.q_lora);
    } else {
      Add("self_attention.linear_q_proj.weight", ShardKind::kColumn,
          {{"self_attn.q_proj.weight", q_rows}}, d_.hidden);
    }
    Add("self_attention.linear_kv_down_proj.weight", ShardKind::kReplicated,
        {{"self_attn.kv_a_proj_with_mqa.weight", d_.kv_lora + d_.qk_rope}},
        d_.hidden);
    Norm("self_attention.linear_kv_up_proj.layer_norm_weight",
         "self_attn.kv_a_layernorm.weight", d_.kv_lora);
    Add("self_attention.linear_kv_up_proj.weight", ShardKind::kColumn,
        {{"self_attn.kv_b_proj.weight", d_.heads * (d_.qk_nope + d_.v_head)}},
        d_.kv_lora);
    Add("self_attention.linear_proj.weight", ShardKind::kRow,
        {{"self_attn.o_proj.weight", d_.hidden}}, d_.heads * d_.v_head);
  }

  // DeepSeek-V3 multi-token prediction layer k on the last pipeline stage
  // (Megatron multi_token_prediction.py MultiTokenPredictionLayer: enorm,
  // hnorm, eh_proj a ColumnParallelLinear [H, 2H] over [embedding; hidden],
  // transformer_layer, final_layernorm). HF: model.layers.(L + k).*, the
  // final norm as shared_head.norm; its embed_tokens and shared_head.head
  // are the main model's (Megatron shares them) and are not refit again.
  void Mtp(int k) {
    Global(Placement::kLastStage);
    const std::string mtp = "mtp.layers." + std::to_string(k) + ".";
    hf_ = hf_root_ + "model.layers." + std::to_string(d_.layers + k) + ".";
    mg_ = mtp;
    Norm("enorm.weight", "enorm.weight", d_.hidden);
    Norm("hnorm.weight", "hnorm.weight", d_.hidden);
    Add("eh_proj.weight", ShardKind::kColumn, {{"eh_proj.weight", d_.hidden}},
        2 * d_.hidden)
        .engine_replicated = true;
    mg_ = mtp + "transformer_layer.";
    if (f_.mla) {
      MultiLatentAttention();
    } else {
      SelfAttention();
    }
    if (d_.experts > 0) {
      Moe();
    } else {
      DenseMlp();
    }
    mg_ = mtp;
    Norm("final_layernorm.weight", "shared_head.norm.weight", d_.hidden);
  }

  // Mllama cross-attention to the vision tokens.
  void CrossAttention() {
    const int64_t q = d_.heads * d_.head_dim, kv = d_.groups * d_.head_dim;
    Norm("input_layernorm.weight", "input_layernorm.weight", d_.hidden);
    Add("cross_attention.linear_q.weight", ShardKind::kColumn,
        {{"cross_attn.q_proj.weight", q}}, d_.hidden);
    Add("cross_attention.linear_kv.weight", ShardKind::kColumn,
        {{"cross_attn.k_proj.weight", kv}, {"cross_attn.v_proj.weight", kv}},
        d_.hidden, d_.groups);
    Norm("cross_attention.q_layernorm.weight", "cross_attn.q_norm.weight",
         d_.head_dim);
    Norm("cross_attention.k_layernorm.weight", "cross_attn.k_norm.weight",
         d_.head_dim);
    Add("cross_attention.linear_proj.weight", ShardKind::kRow,
        {{"cross_attn.o_proj.weight", d_.hidden}}, q);
    Norm("cross_attn_attn_gate", "cross_attn_attn_gate", 1);
    Norm("cross_attn_mlp_gate", "cross_attn_mlp_gate", 1);
  }

  void DenseMlp() {
    Norm("mlp.linear_fc1.layer_norm_weight", "post_attention_layernorm.weight",
         d_.hidden);
    Add("mlp.linear_fc1.weight", ShardKind::kGatedColumn,
        {{"mlp.gate_proj.weight", d_.ffn}, {"mlp.up_proj.weight", d_.ffn}},
        d_.hidden);
    Add("mlp.linear_fc2.weight", ShardKind::kRow,
        {{"mlp.down_proj.weight", d_.hidden}}, d_.ffn);
  }

  void Moe() {
    const MoeNames& n = *f_.moe_names;
    Norm("pre_mlp_layernorm.weight", "post_attention_layernorm.weight",
         d_.hidden);
    AddF32("mlp.router.weight", std::string(n.router), d_.experts, d_.hidden);
    if (d_.expert_bias) {
      ParamSpec& bias = AddF32("mlp.router.expert_bias",
                               std::string(n.expert_bias), d_.experts, 0);
      bias.is_buffer = true;
    }
    for (int64_t e = 0; e < d_.experts; ++e) Expert(n, static_cast<int>(e));
    if (d_.shared > 0) {
      const int64_t width = d_.shared * d_.expert_ffn;
      Add("mlp.shared_experts.linear_fc1.weight", ShardKind::kGatedColumn,
          {{"mlp.shared_experts.gate_proj.weight", width},
           {"mlp.shared_experts.up_proj.weight", width}},
          d_.hidden);
      Add("mlp.shared_experts.linear_fc2.weight", ShardKind::kRow,
          {{"mlp.shared_experts.down_proj.weight", d_.hidden}}, width);
    }
  }

  void Expert(const MoeNames& n, int e) {
    const std::string id = std::to_string(e);
    const std::string hf = std::string(n.experts) + id + ".";
    ParamSpec& fc1 =
        Add("mlp.experts.linear_fc1.weight" + id, ShardKind::kGatedColumn,
            {{hf + std::string(n.gate), d_.expert_ffn},
             {hf + std::string(n.up), d_.expert_ffn}},
            d_.hidden);
    fc1.tp_group = TpGroup::kExpert;
    fc1.expert = e;
    ParamSpec& fc2 =
        Add("mlp.experts.linear_fc2.weight" + id, ShardKind::kRow,
            {{hf + std::string(n.down), d_.hidden}}, d_.expert_ffn);
    fc2.tp_group = TpGroup::kExpert;
    fc2.expert = e;
  }

  const Family& f_;
  const Dims& d_;
  const std::string hf_root_;
  const DType dtype_;
  ModelSpec& spec_;
  int64_t elements_ = 0;  // of all tensors added so far
  Status status_;         // the first size overflow
  // The scope Add() names and places parameters in.
  Placement placement_ = Placement::kFirstStage;
  int layer_ = -1;
  std::string mg_;
  std::string hf_;
};

// The block extents of quantization_config.weight_block_size when the config
// (text or top level) names block FP8 (quant_method "fp8"); nullopt otherwise
// (no quantization_config, another method, or per-tensor FP8 without a block
// size).
Result<std::optional<std::pair<int64_t, int64_t>>> ConfigFp8Block(
    const Json& text, const Json& root) {
  using Block = std::optional<std::pair<int64_t, int64_t>>;
  for (const Json* json : {&text, &root}) {
    const auto q = json->find("quantization_config");
    if (q == json->end() || !q->is_object()) continue;
    const auto method = q->find("quant_method");
    if (method == q->end() || !method->is_string() ||
        method->get<std::string>() != "fp8") {
      continue;
    }
    const auto size = q->find("weight_block_size");
    if (size == q->end() || size->is_null()) return Block();
    if (!size->is_array() || size->size() != 2 ||
        !(*size)[0].is_number_integer() || !(*size)[1].is_number_integer() ||
        (*size)[0].get<int64_t>() <= 0 || (*size)[1].get<int64_t>() <= 0) {
      return ConfigError(
          "field 'quantization_config.weight_block_size' must be two "
          "positive integers");
    }
    return Block(
        std::make_pair((*size)[0].get<int64_t>(), (*size)[1].get<int64_t>()));
  }
  return Block();
}

Result<ModelSpec> Build(const Json& root, const ModelSpecOptions& options) {
  if (!root.is_object()) return ConfigError("not a JSON object");
  REFIT_ASSIGN_OR_RETURN(const Family* family, FindFamily(root));
  const auto text_it = root.find("text_config");
  const Json& text =
      text_it != root.end() && text_it->is_object() ? *text_it : root;
  Fields fields(text);
  Dims dims = ReadDims(*family, fields);
  if (options.mtp) {
    dims.mtp = fields.Int("num_nextn_predict_layers", 0);
    if (dims.mtp > 0 && !family->mtp) {
      return Unimplemented("MTP layers of " +
                           std::string(family->architecture) +
                           " are not supported (DeepSeek-V3-style models "
                           "and GLM-4.x MoE only)");
    }
  }
  REFIT_RETURN_IF_ERROR(fields.status());
  REFIT_ASSIGN_OR_RETURN(const std::optional<DType> dtype,
                         ConfigDType(text, root));
  REFIT_ASSIGN_OR_RETURN(auto fp8_block, ConfigFp8Block(text, root));
  Fields top(root);
  const std::string model_type = top.Str("model_type");
  REFIT_RETURN_IF_ERROR(top.status());

  ModelSpec spec;
  spec.architecture = family->architecture;
  spec.model_type = model_type;
  spec.num_layers = static_cast<int>(dims.layers);
  spec.mtp_layers = static_cast<int>(dims.mtp);
  spec.num_experts = static_cast<int>(dims.experts);
  spec.num_attention_heads = static_cast<int>(dims.heads);
  spec.num_query_groups = static_cast<int>(dims.groups);
  spec.hidden_size = dims.hidden;
  spec.vocab_size = dims.vocab;
  spec.tied_embeddings = dims.tied;
  spec.dtype_from_config = dtype.has_value();
  spec.fp8_block = fp8_block;
  REFIT_RETURN_IF_ERROR(
      Builder(*family, dims, family->cross_attention ? "language_model." : "",
              dtype.value_or(DType::kBF16), spec)
          .Build());
  return spec;
}

}  // namespace

int64_t ParamSpec::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t ModelSpec::TotalParams() const {
  int64_t total = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].data_id == i) total += params[i].NumElements();
  }
  return total;
}

Result<ModelSpec> ModelSpecFromConfigJson(std::string_view config_json,
                                          const ModelSpecOptions& options) {
  try {
    return Build(Json::parse(config_json), options);
  } catch (const std::exception& e) {
    return ConfigError(e.what());
  }
}

std::unordered_map<std::string, std::pair<size_t, size_t>> HfNameIndex(
    const ModelSpec& spec) {
  std::unordered_map<std::string, std::pair<size_t, size_t>> index;
  index.reserve(spec.params.size() * 2);
  for (size_t i = 0; i < spec.params.size(); ++i) {
    const ParamSpec& p = spec.params[i];
    if (p.data_id != i) continue;  // a tied copy: the owner maps the names
    for (size_t j = 0; j < p.hf_names.size(); ++j) {
      index.emplace(p.hf_names[j], std::make_pair(i, j));
    }
  }
  return index;
}

void BindCheckpointDType(ModelSpec& spec, DType dtype) {
  if (spec.dtype_from_config) return;
  for (ParamSpec& p : spec.params) {
    if (!p.dtype_fixed) p.dtype = dtype;
  }
}

std::string_view ShardKindName(ShardKind kind) {
  switch (kind) {
    case ShardKind::kReplicated:
      return "replicated";
    case ShardKind::kColumn:
      return "column";
    case ShardKind::kRow:
      return "row";
    case ShardKind::kGatedColumn:
      return "gated_column";
    case ShardKind::kVocab:
      return "vocab";
  }
  return "?";
}

}  // namespace refit
