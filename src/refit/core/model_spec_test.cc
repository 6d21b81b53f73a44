#include "refit/core/model_spec.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace refit {
namespace {

using Json = nlohmann::json;

std::string SharedPath(const std::string& relative) {
  return std::string(REFIT_DATA_ROOT) + "/data/" + relative;
}

#define SKIP_IF_MISSING(relative)                     \
  if (!std::filesystem::exists(SharedPath(relative))) \
  GTEST_SKIP() << SharedPath(relative) << " is missing"

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The spec of a config under data/ (e.g. "model-configs/llama-3-8b").
ModelSpec LoadSpec(const std::string& dir) {
  Result<ModelSpec> spec =
      ModelSpecFromConfigJson(ReadFile(SharedPath(dir) + "/config.json"));
  EXPECT_TRUE(spec.ok()) << dir << ": " << spec.status().ToString();
  return spec.ok() ? std::move(spec).value() : ModelSpec();
}

const ParamSpec* FindParam(const ModelSpec& spec, const std::string& name) {
  for (const ParamSpec& p : spec.params) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

// A safetensors header entry.
struct HfTensor {
  std::string dtype;
  std::vector<int64_t> shape;
};

// Parses the header of a safetensors file: 8-byte LE length, then JSON.
std::map<std::string, HfTensor> ReadHeader(const std::string& path) {
  const std::string bytes = ReadFile(path);
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) {
    length = (length << 8) | static_cast<unsigned char>(bytes.at(i));
  }
  const Json header = Json::parse(bytes.substr(8, length));
  std::map<std::string, HfTensor> tensors;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    tensors[name] = {entry.at("dtype").get<std::string>(),
                     entry.at("shape").get<std::vector<int64_t>>()};
  }
  return tensors;
}

// Totals from shared/reference/param_counts.md.
TEST(ModelSpecTest, TotalParamsOfEveryModelConfig) {
  const std::map<std::string, int64_t> expected = {
      {"kimi-k2-instruct", 1026408232448},
      {"deepseek-v3", 671026419200},
      {"qwen3-235b-a22b", 235093634560},
      {"qwen3-coder-480b-a35b", 480154875392},
      {"minimax-m2", 228689764864},
      {"glm-4.6", 352797829024},
      {"llama-3.2-90b-vision", 87666865192},
      {"qwen3-30b-a3b", 30532122624},
      {"llama-3-8b", 8030261248},
  };
  int checked = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(SharedPath("model-configs"))) {
    if (!entry.is_directory()) continue;
    const std::string model = entry.path().filename().string();
    const auto it = expected.find(model);
    ASSERT_NE(it, expected.end()) << "no expected total for " << model;
    EXPECT_EQ(LoadSpec("model-configs/" + model).TotalParams(), it->second)
        << model;
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(expected.size()));
}

class CheckpointTest : public testing::TestWithParam<std::string> {};

// The spec names exactly the tensors of a real checkpoint, with their shapes.
TEST_P(CheckpointTest, SpecMatchesSafetensors) {
  SKIP_IF_MISSING("checkpoints/" + GetParam());
  ModelSpec spec = LoadSpec("checkpoints/" + GetParam());
  const std::map<std::string, HfTensor> file = ReadHeader(
      SharedPath("checkpoints/" + GetParam()) + "/model.safetensors");
  const auto index = HfNameIndex(spec);
  EXPECT_EQ(index.size(), file.size());
  for (const auto& [name, tensor] : file) {
    EXPECT_TRUE(index.contains(name)) << "unmapped HF tensor " << name;
  }
  const Result<DType> file_dtype =
      ParseDType(file.at("model.embed_tokens.weight").dtype);
  ASSERT_TRUE(file_dtype.ok());
  BindCheckpointDType(spec, *file_dtype);
  for (const auto& [name, where] : index) {
    const ParamSpec& p = spec.params[where.first];
    ASSERT_EQ(p.hf_names[where.second], name);
    const auto it = file.find(name);
    ASSERT_NE(it, file.end()) << "spec names missing tensor " << name;
    const std::vector<int64_t>& shape = it->second.shape;
    ASSERT_EQ(shape.size(), p.shape.size()) << name;
    EXPECT_EQ(shape[0], p.hf_rows[where.second]) << name;
    for (size_t d = 1; d < shape.size(); ++d) {
      EXPECT_EQ(shape[d], p.shape[d]) << name;
    }
    EXPECT_EQ(DTypeName(p.dtype), it->second.dtype) << p.name;
  }
  int64_t file_elements = 0;
  for (const auto& [name, tensor] : file) {
    int64_t n = 1;
    for (int64_t d : tensor.shape) n *= d;
    file_elements += n;
  }
  EXPECT_EQ(spec.TotalParams(), file_elements);
}

INSTANTIATE_TEST_SUITE_P(Tiny, CheckpointTest,
                         testing::Values("agilerl-tiny-qwen3-moe",
                                         "neural-api-tiny/qwen3_moe",
                                         "neural-api-tiny/deepseek_v2",
                                         "neural-api-tiny/smollm2"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) {
                               c = '_';
                             }
                           }
                           return name;
                         });

// Structural invariants of every parameter list.
TEST(ModelSpecTest, InvariantsOfEveryModelConfig) {
  for (const auto& entry :
       std::filesystem::directory_iterator(SharedPath("model-configs"))) {
    if (!entry.is_directory()) continue;
    const std::string model = entry.path().filename().string();
    const ModelSpec spec = LoadSpec("model-configs/" + model);
    ASSERT_GE(spec.params.size(), 3u) << model;
    EXPECT_EQ(spec.params.front().name, "embedding.word_embeddings.weight");
    EXPECT_EQ(spec.params.front().placement, Placement::kFirstStage);
    EXPECT_EQ(spec.params.back().name, "output_layer.weight");
    EXPECT_EQ(spec.params.back().placement, Placement::kLastStage);
    std::set<std::string> names;
    int last_layer = -1;
    for (size_t i = 0; i < spec.params.size(); ++i) {
      const ParamSpec& p = spec.params[i];
      EXPECT_TRUE(names.insert(p.name).second) << "duplicate " << p.name;
      EXPECT_EQ(p.data_id, i) << p.name;
      EXPECT_EQ(p.hf_names.size(), p.hf_rows.size()) << p.name;
      int64_t rows = 0;
      for (int64_t r : p.hf_rows) {
        EXPECT_EQ(r % p.interleave_groups, 0) << p.name;
        rows += r;
      }
      EXPECT_EQ(rows, p.shape[0]) << p.name;
      if (p.placement == Placement::kLayer) {
        EXPECT_GE(p.layer, last_layer) << p.name;
        last_layer = p.layer;
      }
    }
    EXPECT_EQ(last_layer, spec.num_layers - 1) << model;
  }
}

TEST(ModelSpecTest, Qwen3MoeQkvInterleavesPerQueryGroup) {
  const ModelSpec spec = LoadSpec("model-configs/qwen3-30b-a3b");
  const ParamSpec* qkv =
      FindParam(spec, "decoder.layers.0.self_attention.linear_qkv.weight");
  ASSERT_NE(qkv, nullptr);
  EXPECT_EQ(qkv->shape, (std::vector<int64_t>{(32 + 8) * 128, 2048}));
  EXPECT_EQ(qkv->interleave_groups, 4);
  EXPECT_EQ(qkv->hf_rows, (std::vector<int64_t>{4096, 512, 512}));
  EXPECT_EQ(qkv->shard, ShardKind::kColumn);
  EXPECT_EQ(qkv->hf_names[1], "model.layers.0.self_attn.k_proj.weight");
  const ParamSpec* q_norm =
      FindParam(spec, "decoder.layers.0.self_attention.q_layernorm.weight");
  ASSERT_NE(q_norm, nullptr);
  EXPECT_EQ(q_norm->shape, (std::vector<int64_t>{128}));
  EXPECT_EQ(q_norm->shard, ShardKind::kReplicated);
  EXPECT_EQ(FindParam(spec, "decoder.layers.0.mlp.router.expert_bias"),
            nullptr);
  const ParamSpec* router =
      FindParam(spec, "decoder.layers.0.mlp.router.weight");
  ASSERT_NE(router, nullptr);
  EXPECT_EQ(router->dtype, DType::kF32);
  EXPECT_TRUE(router->dtype_fixed);
  EXPECT_EQ(spec.num_experts, 128);
}

TEST(ModelSpecTest, KimiExpertsDenseFirstLayerAndExpertBias) {
  const ModelSpec spec = LoadSpec("model-configs/kimi-k2-instruct");
  EXPECT_EQ(spec.params.size(), 46874u);
  const ParamSpec* fc1 =
      FindParam(spec, "decoder.layers.1.mlp.experts.linear_fc1.weight7");
  ASSERT_NE(fc1, nullptr);
  EXPECT_EQ(fc1->shard, ShardKind::kGatedColumn);
  EXPECT_EQ(fc1->tp_group, TpGroup::kExpert);
  EXPECT_EQ(fc1->expert, 7);
  EXPECT_EQ(fc1->layer, 1);
  EXPECT_EQ(fc1->shape, (std::vector<int64_t>{2 * 2048, 7168}));
  EXPECT_EQ(fc1->hf_names, (std::vector<std::string>{
                               "model.layers.1.mlp.experts.7.gate_proj.weight",
                               "model.layers.1.mlp.experts.7.up_proj.weight"}));
  for (const ParamSpec& p : spec.params) {
    if (p.layer == 0) {
      EXPECT_EQ(p.name.find("expert"), std::string::npos) << p.name;
    }
  }
  ASSERT_NE(FindParam(spec, "decoder.layers.0.mlp.linear_fc1.weight"), nullptr);
  const ParamSpec* bias =
      FindParam(spec, "decoder.layers.1.mlp.router.expert_bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(bias->dtype, DType::kF32);
  EXPECT_TRUE(bias->is_buffer);
  EXPECT_EQ(bias->shape, (std::vector<int64_t>{384}));
  EXPECT_EQ(bias->hf_names[0],
            "model.layers.1.mlp.gate.e_score_correction_bias");
  const ParamSpec* q_up = FindParam(
      spec, "decoder.layers.5.self_attention.linear_q_up_proj.weight");
  ASSERT_NE(q_up, nullptr);
  EXPECT_EQ(q_up->shape, (std::vector<int64_t>{64 * (128 + 64), 1536}));
  const ParamSpec* shared =
      FindParam(spec, "decoder.layers.1.mlp.shared_experts.linear_fc1.weight");
  ASSERT_NE(shared, nullptr);
  EXPECT_EQ(shared->tp_group, TpGroup::kDense);
}

// ModelSpecOptions::mtp: DeepSeek-V3's one MTP layer after the output
// layer, on the last stage: enorm, hnorm, eh_proj [H, 2H] (column-parallel in
// Megatron, whole in vLLM / SGLang), a MoE decoder layer under
// transformer_layer., final_layernorm from shared_head.norm.
TEST(ModelSpecTest, DeepseekV3MtpLayer) {
  const std::string config =
      ReadFile(SharedPath("model-configs/deepseek-v3") + "/config.json");
  const ModelSpec main = LoadSpec("model-configs/deepseek-v3");
  Result<ModelSpec> with = ModelSpecFromConfigJson(config, {.mtp = true});
  ASSERT_TRUE(with.ok()) << with.status().ToString();
  EXPECT_EQ(main.mtp_layers, 0);
  EXPECT_EQ(with->mtp_layers, 1);
  const ParamSpec* eh = FindParam(*with, "mtp.layers.0.eh_proj.weight");
  ASSERT_NE(eh, nullptr);
  EXPECT_EQ(eh->shape, (std::vector<int64_t>{7168, 2 * 7168}));
  EXPECT_EQ(eh->shard, ShardKind::kColumn);
  EXPECT_TRUE(eh->engine_replicated);
  EXPECT_EQ(eh->placement, Placement::kLastStage);
  EXPECT_EQ(eh->hf_names[0], "model.layers.61.eh_proj.weight");
  const ParamSpec* norm =
      FindParam(*with, "mtp.layers.0.final_layernorm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->hf_names[0], "model.layers.61.shared_head.norm.weight");
  const ParamSpec* fc1 = FindParam(
      *with, "mtp.layers.0.transformer_layer.mlp.experts.linear_fc1.weight255");
  ASSERT_NE(fc1, nullptr);
  EXPECT_EQ(fc1->expert, 255);
  EXPECT_EQ(fc1->layer, -1);
  EXPECT_EQ(fc1->hf_names[0],
            "model.layers.61.mlp.experts.255.gate_proj.weight");
  // The MTP layer holds a MoE decoder layer's parameters plus its own four.
  int64_t layer60 = 0, mtp = 0;
  for (const ParamSpec& p : main.params) {
    if (p.layer == 60) layer60 += p.NumElements();
  }
  for (const ParamSpec& p : with->params) {
    if (p.name.rfind("mtp.", 0) == 0) mtp += p.NumElements();
  }
  EXPECT_EQ(mtp, layer60 + 3 * 7168 + int64_t{7168} * 14336);
  EXPECT_EQ(with->TotalParams(), main.TotalParams() + mtp);
  // Kimi-K2 has none. GLM-4.6's is the same layer around its own decoder
  // layer (vLLM glm4_moe_mtp.py): GQA attention with bias and QK norm.
  EXPECT_EQ(ModelSpecFromConfigJson(
                ReadFile(SharedPath("model-configs/kimi-k2-instruct") +
                         "/config.json"),
                {.mtp = true})
                ->mtp_layers,
            0);
  Result<ModelSpec> glm = ModelSpecFromConfigJson(
      ReadFile(SharedPath("model-configs/glm-4.6") + "/config.json"),
      {.mtp = true});
  ASSERT_TRUE(glm.ok()) << glm.status().ToString();
  EXPECT_EQ(glm->mtp_layers, 1);
  const ParamSpec* qkv_bias = FindParam(
      *glm, "mtp.layers.0.transformer_layer.self_attention.linear_qkv.bias");
  ASSERT_NE(qkv_bias, nullptr);
  EXPECT_EQ(qkv_bias->hf_names.front(),
            "model.layers.92.self_attn.q_proj.bias");
  EXPECT_NE(FindParam(*glm,
                      "mtp.layers.0.transformer_layer.mlp.experts."
                      "linear_fc1.weight159"),
            nullptr);
  Result<ModelSpec> qwen = ModelSpecFromConfigJson(
      R"({"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 64,
          "num_attention_heads": 4, "num_key_value_heads": 4,
          "num_hidden_layers": 1, "num_experts": 4, "vocab_size": 100,
          "moe_intermediate_size": 16, "intermediate_size": 32,
          "num_nextn_predict_layers": 1})",
      {.mtp = true});
  EXPECT_EQ(qwen.status().code(), StatusCode::kUnimplemented);
}

TEST(ModelSpecTest, MiniMaxFullWidthQkNormAndBlockSparseExperts) {
  const ModelSpec spec = LoadSpec("model-configs/minimax-m2");
  const ParamSpec* k_norm =
      FindParam(spec, "decoder.layers.0.self_attention.k_layernorm.weight");
  ASSERT_NE(k_norm, nullptr);
  EXPECT_EQ(k_norm->shape, (std::vector<int64_t>{8 * 128}));
  EXPECT_EQ(k_norm->shard, ShardKind::kColumn);
  const ParamSpec* fc1 =
      FindParam(spec, "decoder.layers.2.mlp.experts.linear_fc1.weight3");
  ASSERT_NE(fc1, nullptr);
  EXPECT_EQ(fc1->hf_names[1],
            "model.layers.2.block_sparse_moe.experts.3.w3.weight");
  EXPECT_EQ(fc1->shape, (std::vector<int64_t>{2 * 1536, 3072}));
  const ParamSpec* bias =
      FindParam(spec, "decoder.layers.0.mlp.router.expert_bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(bias->hf_names[0],
            "model.layers.0.block_sparse_moe.e_score_correction_bias");
}

TEST(ModelSpecTest, MllamaCrossAttentionLayers) {
  const ModelSpec spec = LoadSpec("model-configs/llama-3.2-90b-vision");
  EXPECT_EQ(spec.params.front().shape,
            (std::vector<int64_t>{128256 + 8, 8192}));
  EXPECT_EQ(spec.params.front().hf_names[0],
            "language_model.model.embed_tokens.weight");
  EXPECT_EQ(spec.params.back().shape, (std::vector<int64_t>{128256, 8192}));
  EXPECT_EQ(spec.params.back().hf_names[0], "language_model.lm_head.weight");
  const ParamSpec* kv =
      FindParam(spec, "decoder.layers.3.cross_attention.linear_kv.weight");
  ASSERT_NE(kv, nullptr);
  EXPECT_EQ(kv->interleave_groups, 8);
  EXPECT_EQ(kv->hf_names[1],
            "language_model.model.layers.3.cross_attn.v_proj.weight");
  ASSERT_NE(FindParam(spec, "decoder.layers.3.cross_attn_mlp_gate"), nullptr);
  EXPECT_EQ(
      FindParam(spec, "decoder.layers.3.self_attention.linear_qkv.weight"),
      nullptr);
  ASSERT_NE(
      FindParam(spec, "decoder.layers.4.self_attention.linear_qkv.weight"),
      nullptr);
}

TEST(ModelSpecTest, TiedOutputLayerSharesEmbeddingData) {
  SKIP_IF_MISSING("checkpoints/neural-api-tiny/smollm2");
  ModelSpec spec = LoadSpec("checkpoints/neural-api-tiny/smollm2");
  EXPECT_TRUE(spec.tied_embeddings);
  const ParamSpec& out = spec.params.back();
  EXPECT_EQ(out.name, "output_layer.weight");
  EXPECT_EQ(out.data_id, 0u);
  EXPECT_EQ(out.hf_names,
            (std::vector<std::string>{"model.embed_tokens.weight"}));
  EXPECT_EQ(HfNameIndex(spec).at("model.embed_tokens.weight").first, 0u);
  int64_t untied_total = 0;
  for (const ParamSpec& p : spec.params) untied_total += p.NumElements();
  EXPECT_EQ(spec.TotalParams(), untied_total - 12 * 8);
}

TEST(ModelSpecTest, CheckpointDTypeBindsOnlyWhenConfigNamesNone) {
  SKIP_IF_MISSING("checkpoints/neural-api-tiny/qwen3_moe");
  ModelSpec spec = LoadSpec("checkpoints/neural-api-tiny/qwen3_moe");
  EXPECT_FALSE(spec.dtype_from_config);
  EXPECT_EQ(spec.params.front().dtype, DType::kBF16);
  BindCheckpointDType(spec, DType::kF16);
  EXPECT_EQ(spec.params.front().dtype, DType::kF16);
  EXPECT_EQ(FindParam(spec, "decoder.layers.0.mlp.router.weight")->dtype,
            DType::kF32);

  ModelSpec named = LoadSpec("model-configs/llama-3-8b");
  EXPECT_TRUE(named.dtype_from_config);
  BindCheckpointDType(named, DType::kF16);
  EXPECT_EQ(named.params.front().dtype, DType::kBF16);
}

TEST(ModelSpecTest, RefusesUnknownAndFusedExpertArchitectures) {
  const Result<ModelSpec> unknown =
      ModelSpecFromConfigJson(R"({"architectures": ["FooForCausalLM"]})");
  EXPECT_EQ(unknown.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(unknown.status().message().find("FooForCausalLM"),
            std::string::npos);
  for (const std::string dir :
       {"gpt_oss", "granitemoe", "llama4", "qwen3_5_moe"}) {
    SKIP_IF_MISSING("checkpoints/neural-api-tiny/" + dir);
    const std::string config = ReadFile(
        SharedPath("checkpoints/neural-api-tiny/" + dir) + "/config.json");
    const Result<ModelSpec> spec = ModelSpecFromConfigJson(config);
    const std::string arch = Json::parse(config)["architectures"][0];
    EXPECT_EQ(spec.status().code(), StatusCode::kUnimplemented) << dir;
    EXPECT_NE(spec.status().message().find(arch), std::string::npos) << dir;
    EXPECT_NE(spec.status().message().find("fused expert"), std::string::npos);
  }
}

TEST(ModelSpecTest, BadConfigsNameTheProblem) {
  const Result<ModelSpec> malformed =
      ModelSpecFromConfigJson("{\"architectures\": [");
  EXPECT_EQ(malformed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(malformed.status().message().rfind("config.json: ", 0), 0u);

  Json config =
      Json::parse(ReadFile(SharedPath("model-configs/llama-3-8b/config.json")));
  config.erase("hidden_size");
  const Result<ModelSpec> missing = ModelSpecFromConfigJson(config.dump());
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("hidden_size"), std::string::npos);

  config["hidden_size"] = "wide";
  const Result<ModelSpec> ill_typed = ModelSpecFromConfigJson(config.dump());
  EXPECT_EQ(ill_typed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(ill_typed.status().message().find("hidden_size"),
            std::string::npos);

  const Result<ModelSpec> no_arch = ModelSpecFromConfigJson("{}");
  EXPECT_EQ(no_arch.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_arch.status().message().find("architectures"),
            std::string::npos);
}

// Fuzzing (docs/RELIABILITY.md): config sizes up to INT32_MAX each made the
// QKV rows (heads x head_dim x 3) overflow int64; the model's element count
// is bounded too, so element and byte counts fit int64.
TEST(ModelSpecTest, SizesTooLargeNameTheTensor) {
  Json config =
      Json::parse(ReadFile(SharedPath("model-configs/llama-3-8b/config.json")));
  config["num_attention_heads"] = 2147483647;
  config["num_key_value_heads"] = 2147483647;
  config["head_dim"] = 2147483647;
  const Result<ModelSpec> qkv = ModelSpecFromConfigJson(config.dump());
  EXPECT_EQ(qkv.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(qkv.status().message().find("linear_qkv.weight"), std::string::npos)
      << qkv.status().message();

  config =
      Json::parse(ReadFile(SharedPath("model-configs/llama-3-8b/config.json")));
  config["vocab_size"] = 2147483647;
  config["hidden_size"] = 2147483647;
  const Result<ModelSpec> embedding = ModelSpecFromConfigJson(config.dump());
  EXPECT_EQ(embedding.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(embedding.status().message().find("word_embeddings"),
            std::string::npos)
      << embedding.status().message();
}

// Fuzzing: without head_dim, more attention heads than hidden_size made
// head_dim hidden / heads = 0, and the QKV weight a tensor of zero rows.
TEST(ModelSpecTest, HeadDimOfZeroIsRejected) {
  Json config =
      Json::parse(ReadFile(SharedPath("model-configs/llama-3-8b/config.json")));
  config.erase("head_dim");
  config["num_attention_heads"] = 8192;
  config["num_key_value_heads"] = 8192;
  const Result<ModelSpec> spec = ModelSpecFromConfigJson(config.dump());
  EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find("head_dim"), std::string::npos)
      << spec.status().message();
  config["num_attention_heads"] = 4096;  // head_dim 1: valid
  config["num_key_value_heads"] = 4096;
  EXPECT_TRUE(ModelSpecFromConfigJson(config.dump()).ok());
}

// Fuzzing (libFuzzer out-of-memory): 4M dense layers, under the former bound
// of 2^22 layers x experts, made a 1 kB config.json allocate 12 GB.
TEST(ModelSpecTest, ParameterListIsBounded) {
  Json config =
      Json::parse(ReadFile(SharedPath("model-configs/llama-3-8b/config.json")));
  config["num_hidden_layers"] = 4194303;
  const Result<ModelSpec> layers = ModelSpecFromConfigJson(config.dump());
  EXPECT_EQ(layers.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(layers.status().message().find("num_hidden_layers"),
            std::string::npos);
  config["num_hidden_layers"] = 1000;  // 8k parameters: fine
  EXPECT_TRUE(ModelSpecFromConfigJson(config.dump()).ok());

  config = Json::parse(
      ReadFile(SharedPath("model-configs/qwen3-30b-a3b/config.json")));
  config["num_experts"] = 2147483647;  // the bound must not overflow either
  const Result<ModelSpec> experts = ModelSpecFromConfigJson(config.dump());
  EXPECT_EQ(experts.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(experts.status().message().find("experts"), std::string::npos);
}

}  // namespace
}  // namespace refit
