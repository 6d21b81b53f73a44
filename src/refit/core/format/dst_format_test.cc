#include "refit/core/format/dst_format.h"

#include <gtest/gtest.h>

#include <string>

#include "refit/core/engine_names.h"
#include "refit/core/format/scale_layout.h"
#include "refit/core/test_models.h"

namespace refit {
namespace {

using testing::MustSpec;
using testing::MustTopology;
using testing::Qwen3Config;

// A DeepSeek-V3 layout (MLA, shared experts, routed experts with
// e_score_correction_bias) in BF16 whose dense fc1 (2 x 384 rows) and
// shared-expert fc1 (2 x 256 rows) are cut through 128-row blocks by TP=4.
std::string DeepSeekV3Config() {
  return R"({"architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3", "vocab_size": 1000, "hidden_size": 256,
    "num_hidden_layers": 2, "num_attention_heads": 8,
    "num_key_value_heads": 8, "qk_nope_head_dim": 32, "qk_rope_head_dim": 32,
    "v_head_dim": 64, "kv_lora_rank": 64, "q_lora_rank": 128,
    "intermediate_size": 384, "moe_intermediate_size": 256,
    "n_shared_experts": 1, "n_routed_experts": 4, "num_experts_per_tok": 2,
    "first_k_dense_replace": 1, "moe_layer_freq": 1, "n_group": 1,
    "topk_group": 1, "topk_method": "noaux_tc", "tie_word_embeddings": false,
    "torch_dtype": "bfloat16"})";
}

const ParamSpec& Find(const ModelSpec& spec, const std::string& name,
                      size_t* index = nullptr) {
  return testing::FindParam(spec, name, index);
}

size_t IndexOf(const ModelSpec& spec, const std::string& name) {
  size_t i = 0;
  Find(spec, name, &i);
  return i;
}

TEST(DstFormatTest, NoOptionsCopiesEverything) {
  const ModelSpec spec = MustSpec(DeepSeekV3Config());
  const RefitTopology topo = MustTopology(spec, "tp=2", 2, "tp=1", 2, true);
  Result<FormatPlan> f = ResolveFormats(spec, topo, {});
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->casts + f->quantised + f->harmonised, 0);
  for (const ParamFormat& p : f->params) EXPECT_FALSE(p.converts());
  EXPECT_TRUE(f->plan_options().dst_block.empty());
}

// vLLM and SGLang hold DeepSeek routers in the model dtype (BF16 here), GLM
// routers in F32 in vLLM only, MiniMax-M2's in F32 in both; the bias stays
// F32. A rule naming the router wins; "*" rules do not.
TEST(DstFormatTest, EngineLayoutsCastRoutersToTheEnginesDType) {
  const ModelSpec spec = MustSpec(DeepSeekV3Config());
  const size_t router = IndexOf(spec, "decoder.layers.1.mlp.router.weight");
  const size_t bias = IndexOf(spec, "decoder.layers.1.mlp.router.expert_bias");
  for (const char* family : {"vllm", "sglang"}) {
    const std::string dst = std::string("tp=2,family=") + family;
    const RefitTopology topo =
        MustTopology(spec, "tp=2", 2, dst.c_str(), 2, true);
    EXPECT_TRUE(EngineLayoutCasts(spec, topo));
    PrecisionOptions star;  // --dst-dtype f32: every weight F32
    ASSERT_TRUE(ApplyDstDType("f32", star).ok());
    for (const PrecisionOptions& o : {PrecisionOptions{}, star}) {
      Result<FormatPlan> f = ResolveFormats(spec, topo, o);
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      EXPECT_EQ(f->params[router].src_dtype, DType::kF32);
      EXPECT_EQ(f->params[router].dtype, DType::kBF16) << family;
      EXPECT_EQ(f->params[router].side, ConvertSide::kSend);
      EXPECT_EQ(f->params[bias].dtype, DType::kF32);
    }
    PrecisionOptions named;
    named.rules = {{"*.router.weight", FormatKind::kPlain, DType::kF32}};
    Result<FormatPlan> f = ResolveFormats(spec, topo, named);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_FALSE(f->params[router].converts());
  }
  const RefitTopology megatron = MustTopology(spec, "tp=2", 2, "tp=1", 2, true);
  EXPECT_FALSE(EngineLayoutCasts(spec, megatron));
  ModelSpec glm_spec = spec;
  glm_spec.model_type = "glm4_moe";
  EXPECT_FALSE(EngineRouterDType(glm_spec, LayoutFamily::kVllm).has_value());
  EXPECT_EQ(EngineRouterDType(glm_spec, LayoutFamily::kSglang), DType::kBF16);
  glm_spec.model_type = "minimax_m2";
  EXPECT_FALSE(EngineRouterDType(glm_spec, LayoutFamily::kSglang).has_value());
  EXPECT_FALSE(EngineRouterDType(spec, LayoutFamily::kHf).has_value());
  // A model whose weights are F32 keeps its F32 router.
  const ModelSpec f32 = MustSpec(Qwen3Config(1, 4));
  EXPECT_FALSE(EngineRouterDType(f32, LayoutFamily::kVllm).has_value());
}

TEST(DstFormatTest, ParameterMismatchWithoutRuleIsAnError) {
  const ModelSpec spec = MustSpec(DeepSeekV3Config());
  const RefitTopology topo = MustTopology(spec, "tp=2", 2, "tp=1", 2, true);
  PrecisionOptions o;
  o.dst_model_dtype = DType::kBF16;  // the router weight is F32 in Megatron
  Result<FormatPlan> f = ResolveFormats(spec, topo, o);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().message(),
            "tensor decoder.layers.1.mlp.router.weight: source is F32, the "
            "destination declares BF16 and no cast or quantisation rule "
            "covers it");
}

TEST(DstFormatTest, BuffersAreHarmonisedParametersCast) {
  const ModelSpec spec = MustSpec(DeepSeekV3Config());
  const RefitTopology topo = MustTopology(spec, "tp=2", 2, "tp=1", 2, true);
  PrecisionOptions o;
  ASSERT_TRUE(ApplyDstDType("bf16", o).ok());
  Result<FormatPlan> f = ResolveFormats(spec, topo, o);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const ParamFormat& bias =
      f->params[IndexOf(spec, "decoder.layers.1.mlp.router.expert_bias")];
  EXPECT_TRUE(bias.harmonised);
  EXPECT_EQ(bias.dtype, DType::kF32);  // the destination takes the source's
  EXPECT_FALSE(bias.converts());
  const ParamFormat& router =
      f->params[IndexOf(spec, "decoder.layers.1.mlp.router.weight")];
  EXPECT_EQ(router.src_dtype, DType::kF32);
  EXPECT_EQ(router.dtype, DType::kBF16);
  EXPECT_EQ(router.side, ConvertSide::kSend);
  EXPECT_EQ(f->casts, 1);  // the only F32 parameter
  EXPECT_EQ(f->harmonised, 1);
}

TEST(DstFormatTest, CastRuleByPatternCoversBuffers) {
  const ModelSpec spec = MustSpec(DeepSeekV3Config());
  const RefitTopology topo = MustTopology(spec, "tp=2", 2, "tp=1", 2, true);
  PrecisionOptions o;
  o.cast_on = ConvertSide::kRecv;
  Result<FormatRule> r = ParseCastRule("*.router.*=bf16");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  o.rules.push_back(*r);
  Result<FormatPlan> f = ResolveFormats(spec, topo, o);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->casts, 2);  // router.weight and router.expert_bias
  EXPECT_EQ(f->harmonised, 0);
  const ParamFormat& bias =
      f->params[IndexOf(spec, "decoder.layers.1.mlp.router.expert_bias")];
  EXPECT_EQ(bias.dtype, DType::kBF16);
  EXPECT_EQ(bias.side, ConvertSide::kRecv);
}

TEST(DstFormatTest, ParsesOptionsAndNamesBadValues) {
  PrecisionOptions o;
  EXPECT_EQ(ApplyDstDType("fp4", o).message(),
            "unknown destination format 'fp4' (bf16, f16, f32, fp8-block or "
            "mxfp8)");
  EXPECT_EQ(ParseCastRule("*.weight").status().message(),
            "cast rule '*.weight' is not PATTERN=bf16|f16|f32");
  EXPECT_EQ(ParseCastRule("=bf16").status().message(),
            "cast rule '=bf16' is not PATTERN=bf16|f16|f32");
  EXPECT_FALSE(ParseCastRule("*=fp8-block").ok());
  Result<FormatRule> r = ParseCastRule("decoder.*=f16");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->pattern, "decoder.*");
  EXPECT_EQ(r->dtype, DType::kF16);
  EXPECT_TRUE(r->buffers);
}

TEST(DstFormatTest, QuantisesLinearWeightsOnly) {
  const ModelSpec spec = MustSpec(DeepSeekV3Config());
  int quantisable = 0;
  for (const ParamSpec& p : spec.params) quantisable += IsQuantisableWeight(p);
  // Per layer: q down/up, kv down/up, proj = 5; dense layer fc1+fc2 = 2;
  // MoE layer: shared fc1+fc2 = 2, 4 experts x 2 = 8.
  EXPECT_EQ(quantisable, 5 * 2 + 2 + 2 + 8);
  EXPECT_FALSE(
      IsQuantisableWeight(Find(spec, "embedding.word_embeddings.weight")));
  EXPECT_FALSE(IsQuantisableWeight(Find(spec, "output_layer.weight")));
  EXPECT_FALSE(
      IsQuantisableWeight(Find(spec, "decoder.layers.1.mlp.router.weight")));
  EXPECT_TRUE(IsQuantisableWeight(
      Find(spec, "decoder.layers.1.mlp.experts.linear_fc1.weight3")));
}

TEST(DstFormatTest, Fp8BlockSideFollowsBlockCuts) {
  const ModelSpec spec = MustSpec(DeepSeekV3Config());
  PrecisionOptions o;
  ASSERT_TRUE(ApplyDstDType("fp8-block", o).ok());
  // TP=4 cuts the dense fc1 ([384; 384] -> 96-row halves) through blocks.
  const RefitTopology cut = MustTopology(spec, "tp=1", 4, "tp=4", 4, true);
  Result<FormatPlan> f = ResolveFormats(spec, cut, o);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const ParamFormat& fc1 =
      f->params[IndexOf(spec, "decoder.layers.0.mlp.linear_fc1.weight")];
  EXPECT_EQ(fc1.kind, FormatKind::kFp8Block);
  EXPECT_EQ(fc1.side, ConvertSide::kRecv);
  EXPECT_EQ(fc1.recv_block, 128);
  EXPECT_EQ(f->quantised, 22);
  const PlanOptions po = f->plan_options();
  ASSERT_EQ(po.dst_block.size(), spec.params.size());
  // Re-blocked to 16 (--fp8-block 16), every TP=4 shard holds whole blocks.
  o.fp8.block = {16, 16};
  Result<FormatPlan> g = ResolveFormats(spec, cut, o);
  ASSERT_TRUE(g.ok());
  const ParamFormat& fc1b =
      g->params[IndexOf(spec, "decoder.layers.0.mlp.linear_fc1.weight")];
  EXPECT_EQ(fc1b.side, ConvertSide::kSend);
  EXPECT_EQ(fc1b.recv_block, 0);
  EXPECT_EQ(g->send_side, 22);
  EXPECT_TRUE(g->plan_options().dst_block.empty());
  // Asked for the receiver: every weight quantises there.
  o.quantize_on = ConvertSide::kRecv;
  Result<FormatPlan> h = ResolveFormats(spec, cut, o);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->send_side, 0);
}

TEST(DstFormatTest, Mxfp8NeedsWholeKBlocks) {
  const ModelSpec spec = MustSpec(DeepSeekV3Config());
  PrecisionOptions o;
  ASSERT_TRUE(ApplyDstDType("mxfp8", o).ok());
  const RefitTopology ok = MustTopology(spec, "tp=1", 4, "tp=4", 4, true);
  Result<FormatPlan> f = ResolveFormats(spec, ok, o);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->send_side, 0);  // receiver side by default
  o.quantize_on = ConvertSide::kSend;
  f = ResolveFormats(spec, ok, o);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->send_side, f->quantised);
  o.mxfp8_swizzled = true;  // swizzled scales need the whole shard
  f = ResolveFormats(spec, ok, o);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->send_side, 0);
  // TP=8 cuts the dense fc2's K (384) into 48 columns.
  const RefitTopology bad = MustTopology(spec, "tp=1", 8, "tp=8", 8, true);
  f = ResolveFormats(spec, bad, o);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().message(),
            "tensor decoder.layers.0.mlp.linear_fc2.weight: MXFP8: the "
            "destination TP cuts K off a 32-element block");
}

// Weights bound as F8_E4M3 (--fp8-source keep) travel as they are, with the
// scales of their blocks: whole blocks on both sides, no other rule.
TEST(DstFormatTest, KeptFp8SourcesNeedWholeBlocks) {
  ModelSpec spec = MustSpec(DeepSeekV3Config());
  for (ParamSpec& p : spec.params) {
    if (IsQuantisableWeight(p)) p.dtype = DType::kF8E4M3;
  }
  PrecisionOptions o;
  o.kept_fp8_block = {32, 32};
  const RefitTopology tp2 = MustTopology(spec, "tp=1", 2, "tp=2", 2, true);
  Result<FormatPlan> f = ResolveFormats(spec, tp2, o);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->kept, 22);
  EXPECT_EQ(f->quantised, 0);
  EXPECT_EQ(f->send_side, 0);
  const ParamFormat& fc1 =
      f->params[IndexOf(spec, "decoder.layers.0.mlp.linear_fc1.weight")];
  EXPECT_EQ(fc1.kind, FormatKind::kFp8Block);
  EXPECT_EQ(fc1.side, ConvertSide::kSend);
  EXPECT_EQ(fc1.block.rows, 32);
  // TP=8 leaves 48-row halves of the dense fc1: its 32-row blocks are cut.
  const RefitTopology tp8 = MustTopology(spec, "tp=1", 8, "tp=8", 8, true);
  f = ResolveFormats(spec, tp8, o);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().message(),
            "tensor decoder.layers.0.mlp.linear_fc1.weight: the source is "
            "kept as block FP8 but the destination TP cuts its 32-element "
            "blocks; dequantise it instead (--fp8-source dequantise)");
  ASSERT_TRUE(ApplyDstDType("bf16", o).ok());
  f = ResolveFormats(spec, tp2, o);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("cannot be cast, re-blocked"),
            std::string::npos);
}

// The same TP cut of a row-parallel weight on both sides is planned as one
// run (every row, each one shard wide): its box is still N x width, not
// rows of the whole tensor's width; a sender quantising the wrong box
// wrote wrong blocks (tp=2 -> tp=2 into 32 x 32 blocks had 4 wrong shards).
TEST(DstFormatTest, BoxOfAMergedRowParallelPiece) {
  const ModelSpec spec = MustSpec(Qwen3Config(1, 0));
  const RefitTopology t = MustTopology(spec, "tp=2", 2, "tp=2", 2, false);
  const ReshardPlan plan = *BuildReshardPlan(spec, t);
  size_t proj = 0;
  const ParamSpec& p =
      Find(spec, "decoder.layers.0.self_attention.linear_proj.weight", &proj);
  ASSERT_EQ(p.shard, ShardKind::kRow);
  int seen = 0;
  for (const TransferOp& op : plan.ops) {
    for (const Piece& piece : op.pieces) {
      if (piece.dst_param != proj) continue;
      ASSERT_EQ(piece.nruns, 1u);  // merged: the whole shard in one run
      const PieceBox box = BoxOf(p, piece, DTypeSize(p.dtype));
      EXPECT_EQ(box.rows, p.shape[0]);
      EXPECT_EQ(box.cols, p.shape[1] / 2);
      ++seen;
    }
  }
  EXPECT_EQ(seen, 2);
}

TEST(DstFormatTest, WireBytesOfSenderSideConversions) {
  const ModelSpec spec = MustSpec(DeepSeekV3Config());
  const size_t i = IndexOf(spec, "decoder.layers.0.mlp.linear_fc2.weight");
  const ParamSpec& p = spec.params[i];  // [256, 384] BF16, row-parallel
  Piece piece;                          // 256 rows x 64 columns of a TP shard
  piece.run_bytes = 64 * 2;
  piece.nruns = 256;
  piece.src_stride = piece.dst_stride = 96 * 2;
  ParamFormat f;
  f.src_dtype = f.dtype = DType::kBF16;
  EXPECT_EQ(WireBytes(p, f, piece), 256u * 64 * 2);
  f.dtype = DType::kF32;
  f.side = ConvertSide::kSend;
  EXPECT_EQ(WireBytes(p, f, piece), 256u * 64 * 4);
  f.side = ConvertSide::kRecv;
  EXPECT_EQ(WireBytes(p, f, piece), 256u * 64 * 2);
  f.kind = FormatKind::kFp8Block;
  f.dtype = DType::kF8E4M3;
  f.side = ConvertSide::kSend;
  f.block = {128, 128};
  EXPECT_EQ(WireBytes(p, f, piece), 256u * 64 + 2 * 1 * 4);
  f.kind = FormatKind::kMxfp8;
  f.block = {1, 32};
  EXPECT_EQ(WireBytes(p, f, piece), 256u * 64 + 256 * 2);
}

}  // namespace
}  // namespace refit
