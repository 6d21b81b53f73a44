// HF v5 / Megatron-Bridge stacked expert checkpoints: the bundled tiny
// Qwen3-MoE rewritten with "mlp.experts.gate_up_proj" [E, 2I, H] and
// "mlp.experts.down_proj" [E, H, I] fills the same shards as the per-expert
// original and refits bit-exact; a stack of the wrong shape is named.
#include "refit/checkpoint/stacked_experts.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <regex>

#include "refit/checkpoint/checkpoint_shards.h"
#include "refit/checkpoint/same_shards_test_util.h"
#include "refit/checkpoint/synthetic.h"
#include "refit/core/planner.h"
#include "refit/core/test_models.h"
#include "refit/io/config_file.h"
#include "refit/job/refit_job.h"

namespace refit::exec {
namespace {

namespace fs = std::filesystem;

const std::string kCkpt =
    std::string(REFIT_DATA_ROOT) + "/data/checkpoints/agilerl-tiny-qwen3-moe";

class StackedCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("refit_stacked_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    fs::copy_file(kCkpt + "/config.json", dir_ + "/config.json",
                  fs::copy_options::overwrite_existing);
    auto text = io::ReadConfigText(kCkpt);
    ASSERT_TRUE(text.ok()) << text.status().ToString();
    config_ = *text;
    spec_ = testing::MustSpec(config_);
    auto ckpt = io::Checkpoint::Open(kCkpt);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    per_expert_ = std::make_unique<io::Checkpoint>(std::move(ckpt).value());
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes the original with every layer's experts stacked; `rows_delta`
  // adds rows to each gate_up_proj (a stack that does not match the config).
  void WriteStacked(int64_t rows_delta = 0) {
    static const std::regex kExpert(
        R"(^(.*\.experts\.)(\d+)\.(gate_proj|up_proj|down_proj)\.weight$)");
    struct Stack {
      std::vector<int64_t> shape;
      DType dtype = DType::kF32;
      std::map<int, std::map<std::string, const io::TensorRef*>> experts;
    };
    std::map<std::string, Stack> stacks;
    std::vector<io::TensorToWrite> out;
    for (const std::string& name : per_expert_->Names()) {
      const io::TensorRef* t = per_expert_->Find(name);
      std::smatch m;
      if (!std::regex_match(name, m, kExpert)) {
        out.push_back({name, t->info->dtype, t->info->shape, t->data, nullptr});
        continue;
      }
      const bool down = m[3].str() == "down_proj";
      Stack& s = stacks[m[1].str() + (down ? "down_proj" : "gate_up_proj")];
      s.dtype = t->info->dtype;
      s.shape = {0,
                 t->info->shape[0] * (down ? 1 : 2) + (down ? 0 : rows_delta),
                 t->info->shape[1]};
      s.experts[std::stoi(m[2].str())][m[3].str()] = t;
    }
    for (auto& [name, s] : stacks) {
      s.shape[0] = static_cast<int64_t>(s.experts.size());
      const Stack* stack = &s;
      out.push_back(
          {name, s.dtype, s.shape, nullptr,
           [stack](std::span<std::byte> bytes) {
             std::memset(bytes.data(), 0, bytes.size());
             const uint64_t slice = bytes.size() / stack->shape[0];
             std::byte* at = bytes.data();
             for (const auto& [e, parts] : stack->experts) {
               std::byte* next = at;
               for (const char* part : {"gate_proj", "up_proj", "down_proj"}) {
                 auto it = parts.find(part);
                 if (it == parts.end()) continue;
                 std::memcpy(next, it->second->data, it->second->info->nbytes);
                 next += it->second->info->nbytes;
               }
               at += slice;
             }
           }});
    }
    const Status st = io::WriteSafetensors(dir_ + "/model.safetensors", out,
                                           {{"format", "pt"}});
    ASSERT_TRUE(st.ok()) << st.ToString();
    auto ckpt = io::Checkpoint::Open(dir_);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    stacked_ = std::make_unique<io::Checkpoint>(std::move(ckpt).value());
  }

  std::string dir_, config_;
  ModelSpec spec_;
  std::unique_ptr<io::Checkpoint> per_expert_, stacked_;
};

TEST_F(StackedCheckpoint, FillsTheSameShardsAsPerExpert) {
  WriteStacked();
  ASSERT_NE(stacked_->Find("model.layers.1.mlp.experts.gate_up_proj"), nullptr);
  ASSERT_EQ(stacked_->Find("model.layers.1.mlp.experts.0.gate_proj.weight"),
            nullptr);
  ModelSpec a = spec_, b = spec_;
  auto per_expert = BindCheckpoint(a, *per_expert_);
  auto stacked = BindCheckpoint(b, *stacked_);
  ASSERT_TRUE(per_expert.ok()) << per_expert.status().ToString();
  ASSERT_TRUE(stacked.ok()) << stacked.status().ToString();
  EXPECT_TRUE(stacked->skipped.empty());
  for (const char* layout : {"tp=2,ep=2", "tp=4,ep=1", "tp=1,ep=4"}) {
    ExpectSameShards(a, *per_expert, b, *stacked, layout, 4);
  }
}

TEST_F(StackedCheckpoint, RefitsBitExact) {
  WriteStacked();
  auto bound = BindCheckpoint(spec_, *stacked_);
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  const RefitTopology t =
      testing::MustTopology(spec_, "tp=2,ep=2", 4, "tp=1,ep=4", 4, true);
  auto plan = BuildReshardPlan(spec_, t);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  RefitJobOptions o;
  o.iters = 1;
  auto report = RunEmbeddedRefit(spec_, *bound, t, *plan, o);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->wrong, 0u);
}

TEST_F(StackedCheckpoint, WrongStackShapeIsNamed) {
  WriteStacked(/*rows_delta=*/2);
  auto bound = BindCheckpoint(spec_, *stacked_);
  ASSERT_FALSE(bound.ok());
  EXPECT_EQ(bound.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(bound.status().message().find(
                "stacked expert tensor "
                "'model.layers.0.mlp.experts.gate_up_proj' has shape "
                "[4,66,64], config says [4,64,64]"),
            std::string::npos)
      << bound.status().message();
}

// Synthetic checkpoints of one seed, per expert and stacked (Qwen3-MoE's
// gate/up/down_proj and Mixtral's w1/w3/w2), fill the same shards.
TEST(SyntheticStackedCheckpoint, FillsTheSameShardsAsPerExpert) {
  const std::string mixtral =
      R"({"architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
          "hidden_size": 64, "intermediate_size": 32, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2,
          "num_local_experts": 4, "num_experts_per_tok": 2,
          "vocab_size": 1000, "torch_dtype": "bfloat16"})";
  const std::string dir = fs::temp_directory_path() /
                          ("refit_synth_stacked_" + std::to_string(getpid()));
  for (const std::string& config :
       {testing::Qwen3Config(2, 8, "bfloat16"), mixtral}) {
    ModelSpec a = testing::MustSpec(config), b = a;
    SyntheticOptions o;
    o.seed = 7;
    ASSERT_TRUE(WriteSyntheticCheckpoint(a, config, dir + "/a", o).ok());
    o.stacked_experts = true;
    ASSERT_TRUE(WriteSyntheticCheckpoint(b, config, dir + "/b", o).ok());
    auto ca = io::Checkpoint::Open(dir + "/a");
    auto cb = io::Checkpoint::Open(dir + "/b");
    ASSERT_TRUE(ca.ok() && cb.ok());
    const std::string prefix = a.architecture == "MixtralForCausalLM"
                                   ? "model.layers.1.block_sparse_moe.experts."
                                   : "model.layers.1.mlp.experts.";
    const io::TensorRef* stack = cb->Find(prefix + "gate_up_proj");
    ASSERT_NE(stack, nullptr) << a.architecture;
    EXPECT_EQ(stack->info->shape[0], a.num_experts);
    EXPECT_EQ(cb->Find(prefix + "0.w1.weight"), nullptr);
    EXPECT_EQ(cb->Find(prefix + "0.gate_proj.weight"), nullptr);
    auto pa = BindCheckpoint(a, *ca);
    auto pb = BindCheckpoint(b, *cb);
    ASSERT_TRUE(pa.ok()) << pa.status().ToString();
    ASSERT_TRUE(pb.ok()) << pb.status().ToString();
    ExpectSameShards(a, *pa, b, *pb, "tp=2,ep=2", 4);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace refit::exec
