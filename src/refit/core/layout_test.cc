#include "refit/core/layout.h"

#include <gtest/gtest.h>

#include "refit/core/shard.h"
#include "refit/core/test_models.h"

namespace refit {
namespace {

using testing::MustSpec;
using testing::Qwen3Config;

Layout MustLayout(const std::string& text, int world, const ModelSpec& spec) {
  Result<ParallelConfig> c = ParseParallelConfig(text);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  Result<Layout> l = Layout::Create(*c, world, spec);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return *l;
}

std::string CreateError(const std::string& text, int world,
                        const ModelSpec& spec) {
  Result<Layout> l = Layout::Create(*ParseParallelConfig(text), world, spec);
  EXPECT_FALSE(l.ok()) << text;
  return l.status().message();
}

TEST(ParallelConfigTest, ParsesDefaultsAndEtp) {
  ParallelConfig c = *ParseParallelConfig("ep=2,tp=4");
  EXPECT_EQ(c.tp, 4);
  EXPECT_EQ(c.pp, 1);
  EXPECT_EQ(c.ep, 2);
  EXPECT_EQ(c.expert_tp(), 4);
  EXPECT_EQ(c.ToString(), "tp=4,pp=1,ep=2,etp=4");
  EXPECT_EQ(ParseParallelConfig("tp=4,etp=1")->expert_tp(), 1);
  EXPECT_EQ(ParseParallelConfig("pp=3,pp_first=1,pp_last=0")->ToString(),
            "tp=1,pp=3,ep=1,etp=1,pp_first=1,pp_last=0");
}

TEST(ParallelConfigTest, RejectsBadStrings) {
  for (const char* bad :
       {"", "tp", "tp=0", "tp=x", "dp=2", "tp=2,,ep=2", "tp=-1", "tp=2 "}) {
    Result<ParallelConfig> c = ParseParallelConfig(bad);
    EXPECT_FALSE(c.ok()) << bad;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_NE(ParseParallelConfig("dp=2").status().message().find("'dp'"),
            std::string::npos);
}

// layouts.md §1.8 worked example: world 16, TP 2, PP 2, EP 4, ETP 1.
TEST(LayoutTest, MegatronRankOrderWorkedExample) {
  const ModelSpec spec = MustSpec(Qwen3Config(4, 8));
  const Layout l = MustLayout("tp=2,pp=2,ep=4,etp=1", 16, spec);
  EXPECT_EQ(l.dp(), 4);
  EXPECT_EQ(l.edp(), 2);
  EXPECT_EQ(l.TpRank(5), 1);
  EXPECT_EQ(l.DpRank(5), 2);
  EXPECT_EQ(l.PpRank(5), 0);
  EXPECT_EQ(l.EpRank(5), 1);
  EXPECT_EQ(l.EdpRank(5), 1);
  EXPECT_EQ(l.PpRank(8), 1);
  // DP group of rank 0 is {0, 2, 4, 6}; expert-DP group of rank 1 is {1, 5}.
  for (int dp = 0; dp < 4; ++dp) EXPECT_EQ(l.DenseRank(0, 0, dp, 0), 2 * dp);
  EXPECT_EQ(l.ExpertRank(0, 1, 1, 0), 5);
  for (int r = 0; r < 16; ++r) {
    EXPECT_EQ(l.DenseRank(l.TpRank(r), l.CpRank(r), l.DpRank(r), l.PpRank(r)),
              r);
    EXPECT_EQ(
        l.ExpertRank(l.EtpRank(r), l.EpRank(r), l.EdpRank(r), l.PpRank(r)), r);
  }
}

TEST(LayoutTest, UnevenPipelineStages) {
  const ModelSpec spec = MustSpec(Qwen3Config(10, 0));
  const Layout l = MustLayout("pp=4,pp_first=1,pp_last=3", 4, spec);
  const int first[] = {0, 1, 4, 7}, count[] = {1, 3, 3, 3};
  for (int s = 0; s < 4; ++s) {
    EXPECT_EQ(l.StageFirstLayer(s), first[s]);
    EXPECT_EQ(l.StageNumLayers(s), count[s]);
  }
  EXPECT_EQ(l.StageOfLayer(0), 0);
  EXPECT_EQ(l.StageOfLayer(3), 1);
  EXPECT_EQ(l.StageOfLayer(9), 3);
  const Layout even = MustLayout("pp=2", 2, spec);
  EXPECT_EQ(even.StageFirstLayer(1), 5);
  // Only the first stage fixed: the rest split evenly over the others.
  const Layout first_only = MustLayout("pp=3,pp_first=4", 3, spec);
  EXPECT_EQ(first_only.StageNumLayers(1), 3);
  EXPECT_EQ(first_only.StageNumLayers(2), 3);
}

TEST(LayoutTest, RejectsLayoutsThatDoNotDivideWithTheReason) {
  const ModelSpec moe = MustSpec(Qwen3Config(2, 4));
  EXPECT_NE(CreateError("tp=3", 3, moe).find("num_attention_heads"),
            std::string::npos);
  EXPECT_NE(CreateError("ep=3", 3, moe).find("num_experts"), std::string::npos);
  EXPECT_NE(CreateError("pp=3", 3, moe).find("num_layers"), std::string::npos);
  EXPECT_NE(CreateError("tp=2", 3, moe).find("world size 3"),
            std::string::npos);
  EXPECT_NE(CreateError("tp=2,ep=4", 4, moe).find("etp*ep*pp"),
            std::string::npos);
  const ModelSpec dense = MustSpec(Qwen3Config(2, 0));
  EXPECT_NE(CreateError("ep=2", 2, dense).find("no routed experts"),
            std::string::npos);
  // Expert width 32 does not split over etp=3: the tensor is named.
  EXPECT_NE(CreateError("tp=1,etp=3", 3, moe).find("linear_fc1.weight0"),
            std::string::npos);
}

// Fuzzing (docs/RELIABILITY.md): tp*cp*pp, etp*ep*pp and pp_first + pp_last
// were formed in int, which sizes up to INT_MAX overflow (65536 * 65536 wraps
// to 0: the world size was then taken modulo 0).
TEST(LayoutTest, HugeSizesAreRejectedWithoutOverflow) {
  const ModelSpec moe = MustSpec(Qwen3Config(2, 4));
  EXPECT_NE(CreateError("tp=65536,pp=65536", 1, moe).find("tp*cp*pp"),
            std::string::npos);
  EXPECT_NE(CreateError("ep=65536,pp=65536", 65536, moe).find("etp*ep*pp"),
            std::string::npos);
  EXPECT_NE(CreateError("pp=2,pp_first=2147483647,pp_last=2147483647", 2, moe)
                .find("num_layers"),
            std::string::npos);
}

// family=... names whose tensors a layout describes; it round-trips through
// ToString and is checked against the model.
TEST(LayoutTest, FamilyParsesPrintsAndIsChecked) {
  const ModelSpec spec = testing::MustSpec(testing::Qwen3Config(2, 4));
  Result<ParallelConfig> c = ParseParallelConfig("tp=2,ep=2,family=vllm");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->family, LayoutFamily::kVllm);
  EXPECT_EQ(c->ToString(), "tp=2,pp=1,ep=2,etp=2,family=vllm");
  EXPECT_EQ(ParseParallelConfig(c->ToString())->family, LayoutFamily::kVllm);
  EXPECT_EQ(ParseParallelConfig("tp=2")->ToString(), "tp=2,pp=1,ep=1,etp=2");
  Result<ParallelConfig> bad = ParseParallelConfig("tp=2,family=trt");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown family 'trt'"),
            std::string::npos);
  Result<Layout> hf =
      Layout::Create(*ParseParallelConfig("tp=2,family=hf"), 2, spec);
  ASSERT_FALSE(hf.ok());
  EXPECT_NE(hf.status().message().find("tp and etp must be 1"),
            std::string::npos);
  EXPECT_TRUE(
      Layout::Create(*ParseParallelConfig("ep=2,pp=2,family=hf"), 4, spec)
          .ok());
  Result<Layout> cp =
      Layout::Create(*ParseParallelConfig("cp=2,family=sglang"), 2, spec);
  ASSERT_FALSE(cp.ok());
  EXPECT_NE(cp.status().message().find("needs cp=1"), std::string::npos);
}

// w13=up_gate (FusedMoE's load_up_proj_weight_first): a routed expert's
// fc1 shard holds its up rows first; other gated tensors keep [gate; up];
// only engine families take it.
TEST(LayoutTest, W13UpFirstSwapsTheHalvesOfRoutedExperts) {
  const ModelSpec spec = testing::MustSpec(testing::Qwen3Config(1, 4));
  Result<ParallelConfig> c =
      ParseParallelConfig("tp=2,ep=2,etp=1,family=sglang,w13=up_gate");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ToString(), "tp=2,pp=1,ep=2,etp=1,family=sglang,w13=up_gate");
  const Layout l = *Layout::Create(*c, 4, spec);
  const ParamSpec& fc1 = testing::FindParam(
      spec, "decoder.layers.0.mlp.experts.linear_fc1.weight0");
  const ShardGeometry g = ShardOf(fc1, l, 0);
  ASSERT_EQ(g.segments.size(), 2u);
  const int64_t half = fc1.shape[0] / 2;
  EXPECT_EQ(g.segments[0].global_start, half);  // up rows
  EXPECT_EQ(g.segments[0].local_start, 0);
  EXPECT_EQ(g.segments[1].global_start, 0);  // then gate rows
  EXPECT_EQ(g.segments[1].local_start, half);
  EXPECT_EQ(Layout::Create(*ParseParallelConfig("tp=2,w13=up_gate"), 2, spec)
                .status()
                .message(),
            "layout tp=2,pp=1,ep=1,etp=2,w13=up_gate: w13=up_gate is an "
            "engine layout (family vllm or sglang)");
  EXPECT_FALSE(ParseParallelConfig("tp=2,w13=down_up").ok());
}

// placement=... (vLLM's physical_to_logical_map): slots per EP rank,
// replicas, the local slot of each expert, and the checks.
TEST(LayoutTest, ExpertPlacementWithReplicas) {
  const ModelSpec spec = MustSpec(Qwen3Config(1, 4));
  Result<ParallelConfig> c =
      ParseParallelConfig("ep=2,tp=1,placement=3:0:1:2:0:3");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ToString(), "tp=1,pp=1,ep=2,etp=1,placement=3:0:1:2:0:3");
  Result<Layout> l = Layout::Create(*c, 2, spec);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->ExpertsPerRank(), 3);
  EXPECT_EQ(l->LocalExpertSlot(0, 3), 0);
  EXPECT_EQ(l->LocalExpertSlot(1, 3), 2);
  EXPECT_EQ(l->LocalExpertSlot(1, 1), -1);
  EXPECT_EQ(l->ExpertEpRanks(0), (std::vector<int>{0, 1}));
  EXPECT_EQ(l->ExpertEpRanks(2), (std::vector<int>{1}));
  EXPECT_EQ(l->ExpertClass(0), l->ExpertClass(3));
  EXPECT_NE(l->ExpertClass(1), l->ExpertClass(2));
  EXPECT_EQ(l->ExpertClassCount(), 3);
  const std::vector<std::pair<const char*, const char*>> bad = {
      {"ep=2,placement=0:1:2", "multiple of ep=2"},
      {"ep=2,placement=0:1:2:7", "expert 7 is not in [0, 4)"},
      {"ep=2,placement=0:0:1:2:3:1", "expert 0 twice on EP rank 0"},
      {"ep=2,placement=0:1:2:1", "expert 3 has no slot"}};
  for (const auto& [text, what] : bad) {
    Result<Layout> b = Layout::Create(*ParseParallelConfig(text), 2, spec);
    ASSERT_FALSE(b.ok()) << text;
    EXPECT_NE(b.status().message().find(what), std::string::npos)
        << b.status().message();
  }
}

}  // namespace
}  // namespace refit
