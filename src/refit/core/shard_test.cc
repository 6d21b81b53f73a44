#include "refit/core/shard.h"

#include <gtest/gtest.h>

#include <array>

#include "refit/core/test_models.h"

namespace refit {
namespace {

using testing::MustSpec;
using testing::Qwen3Config;

const ParamSpec& Find(const ModelSpec& spec, const std::string& name,
                      size_t* index = nullptr) {
  return testing::FindParam(spec, name, index);
}

Layout MustLayout(const std::string& text, int world, const ModelSpec& spec) {
  Result<Layout> l = Layout::Create(*ParseParallelConfig(text), world, spec);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return *l;
}

// fc1 is [gate; up] of 96 rows each; TP rank 1 of 2 holds [gate_1; up_1].
TEST(ShardTest, GatedFc1HoldsGateAndUpSlices) {
  const ModelSpec spec = MustSpec(Qwen3Config(2, 0));
  const Layout l = MustLayout("tp=2", 2, spec);
  const ParamSpec& fc1 = Find(spec, "decoder.layers.0.mlp.linear_fc1.weight");
  const ShardGeometry g = ShardOf(fc1, l, 1);
  EXPECT_EQ(g.local_shape, (std::vector<int64_t>{96, 64}));
  ASSERT_EQ(g.segments.size(), 2u);
  EXPECT_EQ(g.segments[0].global_start, 48);
  EXPECT_EQ(g.segments[0].local_start, 0);
  EXPECT_EQ(g.segments[0].length, 48);
  EXPECT_EQ(g.segments[1].global_start, 96 + 48);
  EXPECT_EQ(g.segments[1].local_start, 48);
}

// vLLM's QKVParallelLinear holds [q_r; k_r; v_r]: with 4 groups of
// [16 q; 8 k; 8 v] rows, TP rank 1 of 2 holds groups 2 and 3, q rows of both
// first (Megatron holds [q_2; k_2; v_2; q_3; k_3; v_3]).
TEST(ShardTest, EngineQkvHoldsQThenKThenV) {
  const ModelSpec spec = MustSpec(Qwen3Config(1, 0));
  const ParamSpec& qkv =
      Find(spec, "decoder.layers.0.self_attention.linear_qkv.weight");
  for (const char* family : {"vllm", "sglang"}) {
    const Layout l = MustLayout(std::string("tp=2,family=") + family, 2, spec);
    const ShardGeometry g = ShardOf(qkv, l, 1);
    EXPECT_EQ(g.local_shape, (std::vector<int64_t>{64, 64}));
    const std::vector<std::array<int64_t, 3>> want = {
        {64, 0, 16}, {96, 16, 16},   // q of groups 2, 3
        {80, 32, 8}, {112, 40, 8},   // k
        {88, 48, 8}, {120, 56, 8}};  // v
    ASSERT_EQ(g.segments.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(g.segments[i].global_start, want[i][0]) << i;
      EXPECT_EQ(g.segments[i].local_start, want[i][1]) << i;
      EXPECT_EQ(g.segments[i].length, want[i][2]) << i;
    }
  }
}

// tp=8 > 4 KV heads: each rank holds one q head and the KV head of its group
// (num_kv_head_replicas = 2); rank 5 is the second q head of group 2, whose
// rows run on into k_2 and v_2 (one segment), rank 4 the first.
TEST(ShardTest, EngineQkvReplicatesKvHeadsBeyondTheGroups) {
  const ModelSpec spec = MustSpec(Qwen3Config(1, 0));
  const ParamSpec& qkv =
      Find(spec, "decoder.layers.0.self_attention.linear_qkv.weight");
  const Layout l = MustLayout("tp=8,family=vllm", 8, spec);
  const ShardGeometry g5 = ShardOf(qkv, l, 5);
  EXPECT_EQ(g5.local_shape, (std::vector<int64_t>{24, 64}));
  ASSERT_EQ(g5.segments.size(), 1u);
  EXPECT_EQ(g5.segments[0].global_start, 72);
  EXPECT_EQ(g5.segments[0].length, 24);
  const ShardGeometry g4 = ShardOf(qkv, l, 4);
  ASSERT_EQ(g4.segments.size(), 2u);
  EXPECT_EQ(g4.segments[0].global_start, 64);
  EXPECT_EQ(g4.segments[0].length, 8);
  EXPECT_EQ(g4.segments[1].global_start, 80);
  EXPECT_EQ(g4.segments[1].local_start, 8);
  EXPECT_EQ(g4.segments[1].length, 16);
}

// Every family's QKV shards place each global row once per holder, and the
// local rows of a shard exactly once.
TEST(ShardTest, EngineQkvShardsArePermutationsOfTheirRows) {
  const ModelSpec spec = MustSpec(Qwen3Config(1, 0));
  const ParamSpec& qkv =
      Find(spec, "decoder.layers.0.self_attention.linear_qkv.weight");
  for (int tp : {1, 2, 4, 8}) {
    const Layout l =
        MustLayout("tp=" + std::to_string(tp) + ",family=vllm", tp, spec);
    std::vector<int> held(qkv.shape[0], 0);
    for (int c = 0; c < tp; ++c) {
      const ShardGeometry g = ShardOf(qkv, l, c);
      std::vector<int> local(g.local_shape[0], 0);
      for (const Segment& s : g.segments) {
        for (int64_t i = 0; i < s.length; ++i) {
          ++local[s.local_start + i];
          ++held[s.global_start + i];
        }
      }
      for (int n : local) EXPECT_EQ(n, 1) << "tp " << tp << " coord " << c;
    }
    const int kv_copies = tp > 4 ? tp / 4 : 1;
    for (int64_t r = 0; r < qkv.shape[0]; ++r) {
      const bool q = r % 32 < 16;
      EXPECT_EQ(held[r], q ? 1 : kv_copies) << "tp " << tp << " row " << r;
    }
  }
}

// vLLM pads the vocabulary to a multiple of 64 (1000 -> 1024), Megatron to
// one of 128 * tp (1000 -> 1024 at tp = 1, 2, 4, 8), HF not at all.
TEST(ShardTest, VocabPaddingFollowsTheFamily) {
  const ModelSpec spec = MustSpec(Qwen3Config(1, 0));
  const ParamSpec& emb = Find(spec, "embedding.word_embeddings.weight");
  EXPECT_EQ(
      ShardOf(emb, MustLayout("tp=4,family=vllm", 4, spec), 3).local_shape[0],
      256);
  EXPECT_EQ(ShardOf(emb, MustLayout("tp=4", 4, spec), 3).local_shape[0], 256);
  const ShardGeometry g =
      ShardOf(emb, MustLayout("tp=8,family=sglang", 8, spec), 7);
  EXPECT_EQ(g.local_shape[0], 128);  // Megatron: 1024 / 8 as well
  ASSERT_EQ(g.segments.size(), 1u);
  EXPECT_EQ(g.segments[0].length, 1000 - 7 * 128);
  EXPECT_EQ(
      ShardOf(emb, MustLayout("tp=1,family=hf", 1, spec), 0).local_shape[0],
      1000);
  EXPECT_EQ(ShardOf(emb, MustLayout("tp=1", 1, spec), 0).local_shape[0], 1024);
}

TEST(ShardTest, RowParallelSplitsDimOne) {
  const ModelSpec spec = MustSpec(Qwen3Config(2, 0));
  const Layout l = MustLayout("tp=4", 4, spec);
  const ParamSpec& proj =
      Find(spec, "decoder.layers.1.self_attention.linear_proj.weight");
  const ShardGeometry g = ShardOf(proj, l, 3);
  EXPECT_EQ(g.dim, 1);
  EXPECT_EQ(g.local_shape, (std::vector<int64_t>{64, 16}));
  EXPECT_EQ(g.segments[0].global_start, 48);
  const std::vector<Box> boxes = ShardBoxes(proj, g);
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0].start, (std::vector<int64_t>{0, 48}));
  EXPECT_EQ(boxes[0].extent, (std::vector<int64_t>{64, 16}));
}

// Vocab 1000 at TP 4: padded to a multiple of 128*4 = 1024, 256 rows a
// rank, the last rank holds 232 real rows and 24 padding rows.
TEST(ShardTest, VocabPaddingPerMegatron) {
  const ModelSpec spec = MustSpec(Qwen3Config(2, 0));
  const Layout l = MustLayout("tp=4", 4, spec);
  const ParamSpec& emb = Find(spec, "embedding.word_embeddings.weight");
  const ShardGeometry last = ShardOf(emb, l, 3);
  EXPECT_EQ(last.local_shape[0], 256);
  EXPECT_EQ(last.segments[0].global_start, 768);
  EXPECT_EQ(last.segments[0].length, 232);
  const Layout tp8 = MustLayout("tp=8", 8, spec);
  EXPECT_EQ(ShardOf(emb, tp8, 0).local_shape[0], 128);  // 1024 / 8
  EXPECT_EQ(ShardOf(emb, tp8, 7).segments[0].length, 1000 - 7 * 128);
}

TEST(ShardTest, PlacementAndLocalNames) {
  const ModelSpec spec = MustSpec(Qwen3Config(4, 8));
  const Layout l = MustLayout("tp=1,pp=2,ep=2", 4, spec);
  size_t idx = 0;
  const ParamSpec& expert =
      Find(spec, "decoder.layers.3.mlp.experts.linear_fc2.weight6", &idx);
  // Rank 3: pp stage 1 (layers 2-3), ep rank 1 (experts 4-7).
  EXPECT_TRUE(HoldsParam(expert, idx, l, 3));
  EXPECT_FALSE(HoldsParam(expert, idx, l, 2));  // ep rank 0
  EXPECT_FALSE(HoldsParam(expert, idx, l, 1));  // stage 0
  EXPECT_EQ(LocalName(expert, l, 3),
            "decoder.layers.1.mlp.experts.linear_fc2.weight2");
  EXPECT_EQ(HolderRanks(expert, idx, l, 0), (std::vector<int>{3}));
  size_t out_idx = 0;
  const ParamSpec& out = Find(spec, "output_layer.weight", &out_idx);
  EXPECT_EQ(HolderRanks(out, out_idx, l, 0), (std::vector<int>{2, 3}));
}

TEST(ShardTest, TiedOutputLayerOnlyOnLastStageOfAPipeline) {
  const ModelSpec spec = MustSpec(Qwen3Config(2, 0, "float32", true));
  size_t idx = 0;
  const ParamSpec& out = Find(spec, "output_layer.weight", &idx);
  ASSERT_NE(out.data_id, idx);
  EXPECT_TRUE(HolderRanks(out, idx, MustLayout("tp=1", 1, spec), 0).empty());
  EXPECT_EQ(HolderRanks(out, idx, MustLayout("pp=2", 2, spec), 0),
            (std::vector<int>{1}));
}

}  // namespace
}  // namespace refit
