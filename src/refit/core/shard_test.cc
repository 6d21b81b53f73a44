#include "refit/core/shard.h"

#include <gtest/gtest.h>

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
