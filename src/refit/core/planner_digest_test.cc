// The planner's output pinned byte for byte: digests of whole plans and of
// single ranks' plans, over random models and layouts (with and without
// block-expanded destinations) and the full-size Kimi-K2 with ETP = TP,
// recorded from the planner before its template sharing. A change that
// alters any op, task id, byte count or piece changes a digest.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "refit/core/planner.h"
#include "refit/core/test_models.h"

namespace refit {
namespace {

using testing::MustSpec;

// FNV-1a, 64-bit, over the bytes of values.
class Digest {
 public:
  template <typename T>
  void Add(const T& v) {
    const auto* b = reinterpret_cast<const unsigned char*>(&v);
    for (size_t i = 0; i < sizeof(T); ++i) h_ = (h_ ^ b[i]) * 0x100000001B3ull;
  }
  void Add(const Result<ReshardPlan>& plan) {
    Add(static_cast<int>(plan.status().code()));
    if (!plan.ok()) return;
    Add(plan->bytes_remote);
    Add(plan->bytes_local);
    Add(plan->messages);
    Add(plan->dst_tensors);
    for (const TransferOp& op : plan->ops) {
      Add(op.src_rank);
      Add(op.dst_rank);
      Add(op.task_id);
      Add(op.bytes);
      for (const Piece& p : op.pieces) Add(p);
    }
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xCBF29CE484222325ull;
};

std::string RandomModel(std::mt19937& rng) {
  auto pick = [&](std::vector<int> v) { return v[rng() % v.size()]; };
  const int ng = pick({1, 2, 4});
  const int experts = pick({0, 4, 8});
  return std::string(R"({"architectures": [")") +
         (experts ? "Qwen3MoeForCausalLM" : "LlamaForCausalLM") +
         R"("], "hidden_size": 32, "head_dim": 8, "num_attention_heads": )" +
         std::to_string(ng * pick({1, 2})) + R"(, "num_key_value_heads": )" +
         std::to_string(ng) + R"(, "intermediate_size": 48,
    "moe_intermediate_size": 16, "num_hidden_layers": )" +
         std::to_string(pick({1, 2, 3})) + R"(, "num_experts": )" +
         std::to_string(experts) + R"(, "vocab_size": )" +
         std::to_string(64 + rng() % 200) + R"(, "tie_word_embeddings": )" +
         (rng() % 3 == 0 ? "true" : "false") +
         R"(, "torch_dtype": "bfloat16"})";
}

std::optional<Layout> RandomLayout(std::mt19937& rng, const ModelSpec& spec,
                                   int world) {
  auto pick = [&](std::vector<int> v) { return v[rng() % v.size()]; };
  for (int attempt = 0; attempt < 200; ++attempt) {
    ParallelConfig c;
    c.tp = pick({1, 2, 4});
    c.pp = pick({1, 1, 2});
    c.ep = pick({1, 2, 4});
    c.etp = pick({0, 1, 2, 4});
    Result<Layout> l = Layout::Create(c, world, spec);
    if (l.ok()) return *l;
  }
  return std::nullopt;
}

TEST(PlannerDigestTest, RandomPlansMatchTheRecordedOnes) {
  std::mt19937 rng(77);
  Digest d;
  int cases = 0, planned = 0;
  for (int trial = 0; trial < 300 && cases < 80; ++trial) {
    const ModelSpec spec = MustSpec(RandomModel(rng));
    const bool collocated = rng() % 2;
    const int sw = 1 + rng() % 8;
    const int dw = collocated ? sw : 1 + rng() % 8;
    auto src = RandomLayout(rng, spec, sw);
    auto dst = RandomLayout(rng, spec, dw);
    if (!src || !dst) continue;
    const RefitTopology t =
        *(collocated ? MakeTopology(*src, *dst, 0, 0, sw)
                     : MakeTopology(*src, *dst, 0, sw, sw + dw));
    PlanOptions blocks;
    if (rng() % 2) {
      for (const ParamSpec& p : spec.params) {
        blocks.dst_block.push_back(p.shape.size() == 2 ? 8 : 0);
      }
    }
    const Result<ReshardPlan> plan = BuildReshardPlan(spec, t, blocks);
    planned += plan.ok();
    d.Add(plan);
    d.Add(BuildRankReshardPlan(spec, t, rng() % t.world_size, blocks));
    ++cases;
  }
  EXPECT_EQ(cases, 80);
  EXPECT_GE(planned, 70);  // block-widened shards may overlap: an error
  EXPECT_EQ(d.value(), 0x2eea598c6ce06cd9ull) << std::hex << d.value();
}

std::string ReadConfig(const std::string& name) {
  std::ifstream in(std::string(REFIT_DATA_ROOT) + "/data/model-configs/" +
                   name + "/config.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Kimi-K2, 64 trainer GPUs tp=8,ep=8,etp=8 -> 32 inference GPUs
// tp=8,ep=4,etp=8 (the deployable scenario 1): the whole plan and two ranks'.
TEST(PlannerDigestTest, KimiK2EtpTpPlanMatchesTheRecordedOne) {
  Result<ModelSpec> spec =
      ModelSpecFromConfigJson(ReadConfig("kimi-k2-instruct"));
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  ParallelConfig s, t;
  s.tp = 8, s.ep = 8, s.etp = 8;
  t.tp = 8, t.ep = 4, t.etp = 8;
  const Layout src = *Layout::Create(s, 64, *spec);
  const Layout dst = *Layout::Create(t, 32, *spec);
  const RefitTopology topo = *MakeTopology(src, dst, 0, 64, 96);
  Digest d;
  d.Add(BuildReshardPlan(*spec, topo));
  d.Add(BuildRankReshardPlan(*spec, topo, 5));
  d.Add(BuildRankReshardPlan(*spec, topo, 70));
  EXPECT_EQ(d.value(), 0xd96ee466a5edab8cull) << std::hex << d.value();
}

}  // namespace
}  // namespace refit
