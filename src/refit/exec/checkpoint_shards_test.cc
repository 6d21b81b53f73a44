#include "refit/exec/checkpoint_shards.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "refit/core/test_models.h"
#include "refit/io/safetensors.h"

namespace refit::exec {
namespace {

namespace fs = std::filesystem;

// A Llama with 4 heads / 2 KV heads of dim 2, hidden 4, F32; every HF tensor
// element holds a distinct value: 1000 * tensor id + element index.
constexpr char kLlama[] = R"({"architectures": ["LlamaForCausalLM"],
  "hidden_size": 4, "intermediate_size": 4, "num_hidden_layers": 1,
  "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 2,
  "vocab_size": 3, "torch_dtype": "float32"})";

class LlamaCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("refit_ckpt_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    spec_ = testing::MustSpec(kLlama);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes the checkpoint; `drop` omits a tensor, `bad_shape` misshapes one,
  // `extra` adds one, `bf16_router`-style dtype changes via `dtype_of`.
  void Write(const std::string& drop = "", const std::string& bad_shape = "",
             const std::string& extra = "") {
    std::vector<io::TensorToWrite> tensors;
    float id = 0;
    for (const ParamSpec& p : spec_.params) {
      for (size_t c = 0; c < p.hf_names.size(); ++c) {
        if (p.hf_names[c] == drop || p.data_id != &p - spec_.params.data())
          continue;
        std::vector<int64_t> shape = p.shape;
        shape[0] = p.hf_rows[c];
        if (p.hf_names[c] == bad_shape) shape[0] += 1;
        const float base = 1000 * ++id;
        tensors.push_back({p.hf_names[c], DType::kF32, shape, nullptr,
                           [base](std::span<std::byte> out) {
                             for (size_t i = 0; i < out.size() / 4; ++i) {
                               const float v = base + i;
                               std::memcpy(out.data() + 4 * i, &v, 4);
                             }
                           }});
        ids_[p.hf_names[c]] = base;
      }
    }
    if (!extra.empty()) tensors.push_back({extra, DType::kF32, {1}, &id, {}});
    ASSERT_TRUE(
        io::WriteSafetensors((dir_ / "model.safetensors").string(), tensors, {})
            .ok());
    auto ckpt = io::Checkpoint::Open(dir_.string());
    ASSERT_TRUE(ckpt.ok());
    ckpt_ = std::make_unique<io::Checkpoint>(std::move(ckpt).value());
  }

  const ParamSpec& Param(const std::string& name, size_t* index) {
    for (size_t i = 0; i < spec_.params.size(); ++i) {
      if (spec_.params[i].name == name) return *index = i, spec_.params[i];
    }
    ADD_FAILURE() << name;
    return spec_.params[0];
  }

  fs::path dir_;
  ModelSpec spec_;
  std::unique_ptr<io::Checkpoint> ckpt_;
  std::map<std::string, float> ids_;
};

// QKV rows per query group: q q k v | q q k v (layouts.md §1.3); with 2
// groups, 2 heads of q and 1 of k, v each, head dim 2, hidden 4.
TEST_F(LlamaCheckpoint, QkvInterleavedPerQueryGroup) {
  Write();
  auto bound = BindCheckpoint(spec_, *ckpt_);
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  size_t i = 0;
  const ParamSpec& qkv =
      Param("decoder.layers.0.self_attention.linear_qkv.weight", &i);
  const Layout tp1 = *Layout::Create(ParallelConfig{}, 1, spec_);
  const ShardGeometry g = ShardOf(qkv, tp1, 0);
  std::vector<float> out(g.LocalElements());
  FillShard(qkv, bound->sources[i], g,
            reinterpret_cast<std::byte*>(out.data()));
  const std::string pre = "model.layers.0.self_attn.";
  const float q = ids_[pre + "q_proj.weight"], k = ids_[pre + "k_proj.weight"],
              v = ids_[pre + "v_proj.weight"];
  // Row r of the logical tensor comes from (tensor, row) below; 4 columns.
  const std::pair<float, int> rows[] = {
      {q, 0}, {q, 1}, {q, 2}, {q, 3}, {k, 0}, {k, 1}, {v, 0}, {v, 1},
      {q, 4}, {q, 5}, {q, 6}, {q, 7}, {k, 2}, {k, 3}, {v, 2}, {v, 3}};
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 4; ++c) {
      ASSERT_EQ(out[r * 4 + c], rows[r].first + rows[r].second * 4 + c) << r;
    }
  }
}

// TP rank 1 of 2 holds [gate rows 2-3; up rows 2-3] of fc1.
TEST_F(LlamaCheckpoint, GatedFc1ShardIsGateThenUp) {
  Write();
  auto bound = BindCheckpoint(spec_, *ckpt_);
  ASSERT_TRUE(bound.ok());
  size_t i = 0;
  const ParamSpec& fc1 = Param("decoder.layers.0.mlp.linear_fc1.weight", &i);
  ParallelConfig c;
  c.tp = 2;
  const Layout tp2 = *Layout::Create(c, 2, spec_);
  const ShardGeometry g = ShardOf(fc1, tp2, 1);
  std::vector<float> out(g.LocalElements());
  FillShard(fc1, bound->sources[i], g,
            reinterpret_cast<std::byte*>(out.data()));
  const float gate = ids_["model.layers.0.mlp.gate_proj.weight"];
  const float up = ids_["model.layers.0.mlp.up_proj.weight"];
  EXPECT_EQ(out[0], gate + 8);
  EXPECT_EQ(out[4], gate + 12);
  EXPECT_EQ(out[8], up + 8);
  EXPECT_EQ(out[15], up + 15);
  std::vector<std::byte> scratch;
  EXPECT_TRUE(ShardMatches(fc1, bound->sources[i], g,
                           reinterpret_cast<std::byte*>(out.data()), scratch));
  out[9] += 1;
  EXPECT_FALSE(ShardMatches(fc1, bound->sources[i], g,
                            reinterpret_cast<std::byte*>(out.data()), scratch));
}

TEST_F(LlamaCheckpoint, MissingTensorIsNamed) {
  Write("model.layers.0.mlp.up_proj.weight");
  auto bound = BindCheckpoint(spec_, *ckpt_);
  ASSERT_FALSE(bound.ok());
  EXPECT_EQ(bound.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(bound.status().message().find(
                "missing tensor 'model.layers.0.mlp.up_proj.weight'"),
            std::string::npos);
}

TEST_F(LlamaCheckpoint, WrongShapeIsNamed) {
  Write("", "model.layers.0.self_attn.k_proj.weight");
  auto bound = BindCheckpoint(spec_, *ckpt_);
  ASSERT_FALSE(bound.ok());
  EXPECT_NE(bound.status().message().find(
                "'model.layers.0.self_attn.k_proj.weight' has shape [5,4], "
                "config says [4,4]"),
            std::string::npos);
}

TEST_F(LlamaCheckpoint, UnknownTensorIsAnErrorButMtpLayersAreSkipped) {
  Write("", "", "model.layers.0.self_attn.rotary.inv_freq");
  auto bound = BindCheckpoint(spec_, *ckpt_);
  ASSERT_FALSE(bound.ok());
  EXPECT_NE(bound.status().message().find("rotary.inv_freq"),
            std::string::npos);
  Write("", "", "model.layers.1.enorm.weight");  // layer 1 of 1: MTP
  bound = BindCheckpoint(spec_, *ckpt_);
  ASSERT_TRUE(bound.ok());
  EXPECT_EQ(bound->skipped,
            std::vector<std::string>{"model.layers.1.enorm.weight"});
}

TEST_F(LlamaCheckpoint, DTypeMismatchIsNamed) {
  spec_ = testing::MustSpec(std::string(kLlama).replace(
      std::string(kLlama).find("float32"), 7, "bfloat16"));
  Write();
  auto bound = BindCheckpoint(spec_, *ckpt_);
  ASSERT_FALSE(bound.ok());
  EXPECT_NE(bound.status().message().find("has dtype F32, expected BF16"),
            std::string::npos);
}

}  // namespace
}  // namespace refit::exec
