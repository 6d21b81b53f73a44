#include "refit/checkpoint/checkpoint_shards.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "refit/bench/scaled_config.h"
#include "refit/checkpoint/same_shards_test_util.h"
#include "refit/checkpoint/synthetic.h"
#include "refit/core/format/dst_format.h"
#include "refit/core/format/scale_layout.h"
#include "refit/core/planner.h"
#include "refit/core/quant/block_fp8.h"
#include "refit/core/test_models.h"
#include "refit/io/safetensors.h"
#include "refit/job/refit_job.h"

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

// ---------------------------------------------------------------------------
// Block-FP8 source checkpoints (DeepSeek-V3 / Kimi-K2, layouts.md §4.1).

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Kimi-K2 at 1/64 width with 2 layers (one dense, one MoE of 384 experts);
// its config carries quantization_config weight_block_size [128, 128].
std::string KimiConfig() {
  std::string text =
      ReadText(fs::path(REFIT_DATA_ROOT) / "data" / "model-configs" /
               "kimi-k2-instruct" / "config.json");
  const std::string layers = "\"num_hidden_layers\": 61";
  text.replace(text.find(layers), layers.size(), "\"num_hidden_layers\": 2");
  Result<std::string> scaled = ScaleConfigJson(text, 64, 8);
  EXPECT_TRUE(scaled.ok()) << scaled.status().ToString();
  return *scaled;
}

// A Llama whose blocks (5 x 5) cut every tensor off block boundaries, QKV
// groups included: q [12, 12], k and v [6, 12] (2 groups of 2 q heads of dim
// 3), fc1 [gate; up] [36, 12], fc2 [12, 18].
constexpr char kLlamaFp8[] = R"({"architectures": ["LlamaForCausalLM"],
  "hidden_size": 12, "intermediate_size": 18, "num_hidden_layers": 1,
  "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 3,
  "vocab_size": 7, "torch_dtype": "bfloat16",
  "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                          "weight_block_size": [5, 5]}})";

std::string TempName(const std::string& tag) {
  return (fs::temp_directory_path() /
          ("refit_fp8_" + tag + "_" + std::to_string(getpid())))
      .string();
}

Layout TpLayout(const ModelSpec& spec, int tp) {
  ParallelConfig c;
  c.tp = tp;
  Result<Layout> layout = Layout::Create(c, tp, spec);
  EXPECT_TRUE(layout.ok()) << layout.status().ToString();
  return *layout;
}

// Checks every shard of every block-FP8 parameter at the given TP sizes:
// the dequantised FillShard equals DequantizeBlockFp8 of each whole HF tensor
// (into p.dtype) sliced by the unquantised FillShard. Returns the shard kinds
// seen and whether some shard starts off a block boundary.
struct DequantCoverage {
  std::set<ShardKind> kinds;
  bool cut_block = false;
  int shards = 0;
};
void ExpectDequantisedShards(const ModelSpec& spec,
                             const BoundCheckpoint& bound,
                             const std::vector<int>& tps,
                             DequantCoverage& cov) {
  std::vector<std::vector<std::byte>> plain;  // per HF tensor, dequantised
  std::vector<io::TensorInfo> infos;
  std::vector<io::TensorRef> refs;
  std::vector<std::byte> out, want, scratch;
  for (int tp : tps) {
    const Layout layout = TpLayout(spec, tp);
    for (size_t i = 0; i < spec.params.size(); ++i) {
      if (!bound.quantised(i)) continue;
      const ParamSpec& p = spec.params[i];
      const size_t parts = p.hf_names.size();
      plain.assign(parts, {});
      infos.assign(parts, {});
      refs.assign(parts, {});
      std::vector<const io::TensorRef*> hf;
      for (size_t c = 0; c < parts; ++c) {
        const io::TensorRef& t = *bound.sources[i][c];
        const io::TensorRef& s = *bound.scales[i][c];
        const int64_t n = t.info->shape[0], k = t.info->shape[1];
        plain[c].resize(n * k * DTypeSize(p.dtype));
        ASSERT_TRUE(quant::DequantizeBlockFp8({t.data, t.info->nbytes},
                                              {s.data, s.info->nbytes}, n, k,
                                              bound.block, plain[c], p.dtype)
                        .ok());
        infos[c] = {t.info->name, p.dtype, t.info->shape, 0, plain[c].size()};
        refs[c] = {&infos[c], plain[c].data(), nullptr};
        hf.push_back(&refs[c]);
      }
      for (int coord = 0; coord < ShardCoordCount(p, layout); ++coord) {
        const ShardGeometry g = ShardOf(p, layout, coord);
        const uint64_t bytes = g.LocalElements() * DTypeSize(p.dtype);
        out.assign(bytes, std::byte{0});
        want.assign(bytes, std::byte{0});
        FillShard(p, bound, i, g, out.data());
        FillShard(p, hf, g, want.data());
        ASSERT_EQ(out, want) << p.name << " tp=" << tp << " coord " << coord;
        ASSERT_TRUE(ShardMatches(p, bound, i, g, out.data(), scratch));
        cov.kinds.insert(p.shard);
        const int64_t block = g.dim == 0 ? bound.block.rows : bound.block.cols;
        for (const Segment& seg : g.segments) {
          cov.cut_block |= seg.global_start % block != 0;
        }
        ++cov.shards;
      }
    }
  }
}

class Fp8Checkpoint : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    config_ = new std::string(KimiConfig());
    dir_ = new std::string(TempName("kimi"));
    const ModelSpec spec = testing::MustSpec(*config_);
    SyntheticOptions o;
    o.seed = 3;
    o.fp8_block = true;
    const Status st = WriteSyntheticCheckpoint(spec, *config_, *dir_, o);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete config_;
  }
  void SetUp() override {
    spec_ = testing::MustSpec(*config_);
    auto ckpt = io::Checkpoint::Open(*dir_);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    ckpt_ = std::make_unique<io::Checkpoint>(std::move(ckpt).value());
  }

  size_t Index(const std::string& name) const {
    for (size_t i = 0; i < spec_.params.size(); ++i) {
      if (spec_.params[i].name == name) return i;
    }
    ADD_FAILURE() << name;
    return 0;
  }

  static inline std::string* config_ = nullptr;
  static inline std::string* dir_ = nullptr;
  ModelSpec spec_;
  std::unique_ptr<io::Checkpoint> ckpt_;
};

TEST_F(Fp8Checkpoint, ConfigBlockSize) {
  EXPECT_EQ(spec_.fp8_block, std::make_pair(int64_t{128}, int64_t{128}));
  EXPECT_EQ(testing::MustSpec(kLlama).fp8_block, std::nullopt);
  EXPECT_EQ(testing::MustSpec(kLlamaFp8).fp8_block,
            std::make_pair(int64_t{5}, int64_t{5}));
  std::string bad = kLlamaFp8;
  bad.replace(bad.find("[5, 5]"), 6, "[5]");
  const Result<ModelSpec> spec = ModelSpecFromConfigJson(bad);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().message(),
            "config.json: field 'quantization_config.weight_block_size' must "
            "be two positive integers");
}

// The synthetic writer stores exactly the quantisable weights as F8_E4M3 +
// F32 scale_inv; binding pairs them and lists no scale as an extra.
TEST_F(Fp8Checkpoint, BindsWeightsWithTheirScales) {
  auto bound = BindCheckpoint(spec_, *ckpt_);
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  EXPECT_EQ(bound->block.rows, 128);
  EXPECT_EQ(bound->block.cols, 128);
  EXPECT_TRUE(bound->skipped.empty());
  int quantised = 0;
  for (size_t i = 0; i < spec_.params.size(); ++i) {
    const ParamSpec& p = spec_.params[i];
    ASSERT_EQ(bound->quantised(i), IsQuantisableWeight(p)) << p.name;
    if (!bound->quantised(i)) {
      EXPECT_NE(bound->sources[i][0]->info->dtype, DType::kF8E4M3) << p.name;
      continue;
    }
    ++quantised;
    EXPECT_EQ(p.dtype, DType::kBF16) << p.name;
    ASSERT_EQ(bound->scales[i].size(), p.hf_names.size());
    for (size_t c = 0; c < p.hf_names.size(); ++c) {
      EXPECT_EQ(bound->sources[i][c]->info->dtype, DType::kF8E4M3);
      EXPECT_EQ(bound->scales[i][c]->info->name, p.hf_names[c] + "_scale_inv");
      EXPECT_EQ(bound->scales[i][c]->info->dtype, DType::kF32);
    }
  }
  // The synthetic blocks have different magnitudes, so different scales.
  const size_t fc1 = Index("decoder.layers.0.mlp.linear_fc1.weight");
  const io::TensorRef& gate = *bound->scales[fc1][0];
  ASSERT_EQ(gate.info->shape, (std::vector<int64_t>{3, 1}));
  float s[3];
  std::memcpy(s, gate.data, sizeof(s));
  EXPECT_TRUE(s[0] != s[1] || s[1] != s[2]) << s[0];
  // Layer 0: q_a, q_b, kv_a, kv_b, o, dense fc1, fc2; layer 1: the same
  // attention, 384 experts x 2, shared fc1 and fc2.
  EXPECT_EQ(quantised, 7 + 5 + 384 * 2 + 2);
}

// Column (q_b, kv_b), row-parallel (o_proj, fc2), gated ([gate; up]) and
// replicated (q_a, kv_a) weights; TP 4 and 8 cut the dense fc1's 128-row
// blocks and fc2's 128-column blocks.
TEST_F(Fp8Checkpoint, DequantisedShardsEqualDequantisedTensorsSliced) {
  auto bound = BindCheckpoint(spec_, *ckpt_);
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  DequantCoverage cov;
  ExpectDequantisedShards(spec_, *bound, {1, 2, 4, 8}, cov);
  EXPECT_TRUE(cov.kinds.count(ShardKind::kColumn));
  EXPECT_TRUE(cov.kinds.count(ShardKind::kRow));
  EXPECT_TRUE(cov.kinds.count(ShardKind::kGatedColumn));
  EXPECT_TRUE(cov.kinds.count(ShardKind::kReplicated));
  EXPECT_TRUE(cov.cut_block);
}

// Small blocks (5 x 5) that QKV groups, [gate; up] parts and every TP cut
// go through.
TEST(Fp8SmallBlocks, DequantisedShardsThroughQkvInterleave) {
  const std::string dir = TempName("llama");
  ModelSpec spec = testing::MustSpec(kLlamaFp8);
  SyntheticOptions o;
  o.fp8_block = true;
  ASSERT_TRUE(WriteSyntheticCheckpoint(spec, kLlamaFp8, dir, o).ok());
  auto ckpt = io::Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok());
  auto bound = BindCheckpoint(spec, *ckpt);
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  EXPECT_EQ(bound->block.rows, 5);
  DequantCoverage cov;
  ExpectDequantisedShards(spec, *bound, {1, 2}, cov);
  EXPECT_TRUE(cov.kinds.count(ShardKind::kColumn));  // QKV
  EXPECT_TRUE(cov.kinds.count(ShardKind::kRow));
  EXPECT_TRUE(cov.kinds.count(ShardKind::kGatedColumn));
  EXPECT_TRUE(cov.cut_block);
  // Keeping FP8 blocks through the QKV interleave is refused.
  ModelSpec keep_spec = testing::MustSpec(kLlamaFp8);
  auto keep = BindCheckpoint(keep_spec, *ckpt, Fp8Source::kKeep);
  ASSERT_FALSE(keep.ok());
  EXPECT_EQ(keep.status().message(),
            "checkpoint " + dir +
                ": tensor 'model.layers.0.self_attn.q_proj.weight' is block "
                "FP8 and its rows are interleaved per query group into "
                "decoder.layers.0.self_attention.linear_qkv.weight, so "
                "--fp8-source keep cannot keep its blocks (use dequantise)");
  fs::remove_all(dir);
}

// The logical global FP8 tensor of a (non-interleaved) parameter: its HF
// tensors' bytes one after the other.
std::vector<uint8_t> GlobalFp8(const BoundCheckpoint& bound, size_t i) {
  std::vector<uint8_t> all;
  for (const io::TensorRef* t : bound.sources[i]) {
    const auto* b = reinterpret_cast<const uint8_t*>(t->data);
    all.insert(all.end(), b, b + t->info->nbytes);
  }
  return all;
}

std::vector<float> ScaleRow(const io::TensorRef& s, int64_t row) {
  const int64_t cols = s.info->shape[1];
  std::vector<float> out(cols);
  std::memcpy(out.data(), s.data + row * cols * 4, cols * 4);
  return out;
}

// kKeep: shards hold the FP8 bytes sliced; their scales are the HF scale rows
// (dim 0, per [gate; up] part) or columns (dim 1) of every block they touch.
TEST_F(Fp8Checkpoint, KeptShardsHoldFp8BytesAndTheirBlocksScales) {
  auto bound = BindCheckpoint(spec_, *ckpt_, Fp8Source::kKeep);
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  EXPECT_EQ(bound->fp8, Fp8Source::kKeep);
  ParamFormat f;
  f.kind = FormatKind::kFp8Block;
  f.dtype = DType::kF8E4M3;
  f.block = bound->block;
  const int64_t B = 128;
  std::vector<std::byte> out, scales;
  for (int tp : {1, 2, 4, 8}) {
    const Layout layout = TpLayout(spec_, tp);
    for (size_t i = 0; i < spec_.params.size(); ++i) {
      const ParamSpec& p = spec_.params[i];
      if (!bound->quantised(i)) {
        EXPECT_NE(p.dtype, DType::kF8E4M3) << p.name;
        continue;
      }
      ASSERT_EQ(p.dtype, DType::kF8E4M3) << p.name;
      ASSERT_EQ(p.interleave_groups, 1);
      const std::vector<uint8_t> global = GlobalFp8(*bound, i);
      const int64_t rows = p.shape[0], cols = p.shape[1];
      for (int coord = 0; coord < ShardCoordCount(p, layout); ++coord) {
        const ShardGeometry g = ShardOf(p, layout, coord);
        out.assign(g.LocalElements(), std::byte{0});
        FillShard(p, *bound, i, g, out.data());
        const int64_t lc = g.local_shape[1];
        for (const Segment& s : g.segments) {
          for (int64_t r = 0; r < (g.dim == 0 ? s.length : rows); ++r) {
            const int64_t n = g.dim == 0 ? cols : s.length;
            const int64_t gr = g.dim == 0 ? s.global_start + r : r;
            const int64_t gc = g.dim == 0 ? 0 : s.global_start;
            const int64_t lr = g.dim == 0 ? s.local_start + r : r;
            const int64_t lcol = g.dim == 0 ? 0 : s.local_start;
            ASSERT_EQ(std::memcmp(out.data() + lr * lc + lcol,
                                  global.data() + gr * cols + gc, n),
                      0)
                << p.name << " tp=" << tp;
          }
        }
        // Scales: every row (col) of each part-split segment reads the
        // scale of its HF block.
        f.src_dtype = p.dtype;
        const ScaleLayout sl = ScaleLayoutOf(p, f, g);
        scales.assign(sl.bytes, std::byte{0xff});
        FillShardScales(p, *bound, i, g, scales.data());
        const ShardGeometry split = SplitAtBlockParts(p, g);
        const std::vector<int64_t> bounds = BlockPartBounds(p, split.dim);
        for (size_t k = 0; k < split.segments.size(); ++k) {
          const Segment& s = split.segments[k];
          const size_t part =
              std::upper_bound(bounds.begin(), bounds.end(), s.global_start) -
              bounds.begin() - 1;
          const io::TensorRef& hs = *bound->scales[i][part];
          const int64_t first = (s.global_start - bounds[part]) / B;
          for (int64_t e = s.global_start; e < s.global_start + s.length; ++e) {
            const int64_t blk = (e - bounds[part]) / B;
            const int64_t at = sl.segment_start[k] + blk - first;
            if (split.dim == 0) {
              ASSERT_EQ(std::memcmp(scales.data() + at * sl.cols * 4,
                                    hs.data + blk * sl.cols * 4, sl.cols * 4),
                        0)
                  << p.name << " tp=" << tp << " row " << e;
              continue;
            }
            for (int64_t r = 0; r < sl.rows; ++r) {
              ASSERT_EQ(
                  std::memcmp(scales.data() + (r * sl.cols + at) * 4,
                              hs.data + (r * hs.info->shape[1] + blk) * 4, 4),
                  0)
                  << p.name << " tp=" << tp << " col " << e;
            }
          }
        }
      }
    }
  }
}

// By hand: TP rank 1 of 4 holds gate rows [72, 144) and up rows [72, 144) of
// the dense fc1 (each [288, 112]): blocks 0 and 1 of each, 4 scale rows; and
// columns [72, 144) of fc2 [112, 288]: scale columns 0 and 1.
// transformers v5 block-FP8 stacked experts: gate_up_proj [E, 2I, H] and
// down_proj [E, H, I] in F8_E4M3 with gate_up_proj_scale_inv [E, 2I/B, H/B]
// and down_proj_scale_inv beside them read as the per-expert checkpoint of
// the same values: the same shards dequantised, and kept as FP8 the same
// bytes and block scales.
TEST_F(Fp8Checkpoint, StackedExpertsReadLikePerExpert) {
  const std::string dir = TempName("kimi_stacked");
  SyntheticOptions o;
  o.seed = 3;
  o.fp8_block = true;
  o.stacked_experts = true;
  ASSERT_TRUE(WriteSyntheticCheckpoint(spec_, *config_, dir, o).ok());
  auto stacked = io::Checkpoint::Open(dir);
  ASSERT_TRUE(stacked.ok()) << stacked.status().ToString();
  const std::string e = "model.layers.1.mlp.experts.";
  ASSERT_NE(stacked->Find(e + "gate_up_proj_scale_inv"), nullptr);
  ASSERT_EQ(stacked->Find(e + "0.gate_proj.weight_scale_inv"), nullptr);
  for (Fp8Source mode : {Fp8Source::kDequantise, Fp8Source::kKeep}) {
    ModelSpec a = testing::MustSpec(*config_), b = a;
    auto pa = BindCheckpoint(a, *ckpt_, mode);
    auto pb = BindCheckpoint(b, *stacked, mode);
    ASSERT_TRUE(pa.ok()) << pa.status().ToString();
    ASSERT_TRUE(pb.ok()) << pb.status().ToString();
    ParamFormat f;
    f.kind = FormatKind::kFp8Block;
    f.block = pa->block;
    int experts = 0;
    ExpectSameShards(
        a, *pa, b, *pb, "tp=2,ep=2,etp=1", 4,
        [&](uint32_t p, const ShardArena& x, const ShardArena& y) {
          if (!pa->quantised(p)) return;
          const uint64_t n = ScaleLayoutOf(a.params[p], f, x.geometry(p)).bytes;
          std::vector<std::byte> sx(n), sy(n);
          FillShardScales(a.params[p], *pa, p, x.geometry(p), sx.data());
          FillShardScales(b.params[p], *pb, p, y.geometry(p), sy.data());
          EXPECT_EQ(sx, sy) << a.params[p].name;
          experts += a.params[p].expert >= 0;
        });
    EXPECT_GT(experts, 0);
  }
  fs::remove_all(dir);
}

TEST_F(Fp8Checkpoint, KeptScalesByHand) {
  auto bound = BindCheckpoint(spec_, *ckpt_, Fp8Source::kKeep);
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  const Layout tp4 = TpLayout(spec_, 4);
  const size_t fc1 = Index("decoder.layers.0.mlp.linear_fc1.weight");
  const ShardGeometry g1 = ShardOf(spec_.params[fc1], tp4, 1);
  std::vector<float> s1(4);
  FillShardScales(spec_.params[fc1], *bound, fc1, g1,
                  reinterpret_cast<std::byte*>(s1.data()));
  const io::TensorRef& gate = *bound->scales[fc1][0];
  const io::TensorRef& up = *bound->scales[fc1][1];
  ASSERT_EQ(gate.info->shape, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(s1, (std::vector<float>{ScaleRow(gate, 0)[0], ScaleRow(gate, 1)[0],
                                    ScaleRow(up, 0)[0], ScaleRow(up, 1)[0]}));
  const size_t fc2 = Index("decoder.layers.0.mlp.linear_fc2.weight");
  const ShardGeometry g2 = ShardOf(spec_.params[fc2], tp4, 1);
  ASSERT_EQ(g2.dim, 1);
  std::vector<float> s2(2);
  FillShardScales(spec_.params[fc2], *bound, fc2, g2,
                  reinterpret_cast<std::byte*>(s2.data()));
  const std::vector<float> down = ScaleRow(*bound->scales[fc2][0], 0);
  ASSERT_EQ(down.size(), 3u);
  EXPECT_EQ(s2, (std::vector<float>{down[0], down[1]}));
}

// kKeep end to end through threads: the FP8 bytes refit bit-exact.
TEST_F(Fp8Checkpoint, KeptRefitIsBitExact) {
  auto bound = BindCheckpoint(spec_, *ckpt_, Fp8Source::kKeep);
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  const RefitTopology t =
      testing::MustTopology(spec_, "tp=2", 4, "tp=4,ep=4,etp=1", 4, true);
  auto plan = BuildReshardPlan(spec_, t);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  RefitJobOptions o;
  o.iters = 1;
  auto report = RunEmbeddedRefit(spec_, *bound, t, *plan, o);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->wrong, 0u);
}

// Hand-written checkpoints of kLlamaFp8's tensors (blocks 128 x 128 here):
// `fp8` names the F8_E4M3 tensors, each written with a [1, 1] scale unless
// named in `no_scale`; `scale_shape` overrides a scale's shape; `extra_scale`
// adds a scale beside a BF16 tensor.
class Fp8Errors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempName("errors");
    fs::create_directories(dir_);
    std::string cfg = kLlamaFp8;
    cfg.replace(cfg.find("[5, 5]"), 6, "[128, 128]");
    spec_ = testing::MustSpec(cfg);
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result<BoundCheckpoint> Bind(const std::set<std::string>& fp8,
                               const std::set<std::string>& no_scale = {},
                               const std::string& scale_shape_of = "",
                               const std::string& extra_scale = "") {
    std::vector<io::TensorToWrite> tensors;
    auto zeros = [](std::span<std::byte> out) {
      std::memset(out.data(), 0, out.size());
    };
    for (size_t i = 0; i < spec_.params.size(); ++i) {
      const ParamSpec& p = spec_.params[i];
      if (p.data_id != i) continue;
      for (size_t c = 0; c < p.hf_names.size(); ++c) {
        const std::string& name = p.hf_names[c];
        std::vector<int64_t> shape = p.shape;
        shape[0] = p.hf_rows[c];
        const bool is_fp8 = fp8.count(name) != 0;
        const DType dtype = is_fp8          ? DType::kF8E4M3
                            : p.dtype_fixed ? DType::kF32
                                            : DType::kBF16;
        tensors.push_back({name, dtype, shape, nullptr, zeros});
        if ((is_fp8 && !no_scale.count(name)) || name == extra_scale) {
          const std::vector<int64_t> scale_shape =
              name == scale_shape_of ? std::vector<int64_t>{2, 1}
                                     : std::vector<int64_t>{1, 1};
          tensors.push_back(
              {name + "_scale_inv", DType::kF32, scale_shape, nullptr, zeros});
        }
      }
    }
    const Status st =
        io::WriteSafetensors(dir_ + "/model.safetensors", tensors, {});
    EXPECT_TRUE(st.ok()) << st.ToString();
    auto ckpt = io::Checkpoint::Open(dir_);
    EXPECT_TRUE(ckpt.ok());
    ckpt_ = std::make_unique<io::Checkpoint>(std::move(ckpt).value());
    return BindCheckpoint(spec_, *ckpt_);
  }

  std::string dir_;
  ModelSpec spec_;
  std::unique_ptr<io::Checkpoint> ckpt_;
};

constexpr char kO[] = "model.layers.0.self_attn.o_proj.weight";
constexpr char kGate[] = "model.layers.0.mlp.gate_proj.weight";
constexpr char kUp[] = "model.layers.0.mlp.up_proj.weight";

TEST_F(Fp8Errors, Accepted) {
  auto bound = Bind({kO, kGate, kUp});
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  size_t scales = 0;
  for (const auto& s : bound->scales) scales += s.size();
  EXPECT_EQ(scales, 3u);  // o_proj; gate and up of fc1
}

TEST_F(Fp8Errors, MissingScaleIsNamed) {
  auto bound = Bind({kO}, {kO});
  ASSERT_FALSE(bound.ok());
  EXPECT_EQ(bound.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(bound.status().message(),
            "checkpoint " + dir_ +
                ": missing tensor "
                "'model.layers.0.self_attn.o_proj.weight_scale_inv' (the "
                "block scales of F8_E4M3 tensor "
                "'model.layers.0.self_attn.o_proj.weight')");
}

TEST_F(Fp8Errors, WrongScaleShapeIsNamed) {
  auto bound = Bind({kO}, {}, kO);
  ASSERT_FALSE(bound.ok());
  EXPECT_EQ(bound.status().message(),
            "checkpoint " + dir_ +
                ": tensor 'model.layers.0.self_attn.o_proj.weight_scale_inv' "
                "has shape [2,1], expected [1,1] (scales of "
                "'model.layers.0.self_attn.o_proj.weight' [12,12] in "
                "128x128 blocks)");
}

TEST_F(Fp8Errors, MixedPartsAreNamed) {
  auto bound = Bind({kGate});
  ASSERT_FALSE(bound.ok());
  EXPECT_EQ(bound.status().message(),
            "checkpoint " + dir_ +
                ": tensor 'model.layers.0.mlp.up_proj.weight' has dtype BF16 "
                "but 'model.layers.0.mlp.gate_proj.weight' is F8_E4M3 (both "
                "make decoder.layers.0.mlp.linear_fc1.weight): a parameter's "
                "tensors must all be block FP8 or none");
}

TEST_F(Fp8Errors, ScaleBesideAnUnquantisedTensorIsNamed) {
  auto bound = Bind({}, {}, "", kO);
  ASSERT_FALSE(bound.ok());
  EXPECT_EQ(bound.status().message(),
            "checkpoint " + dir_ +
                ": tensor 'model.layers.0.self_attn.o_proj.weight_scale_inv' "
                "holds block scales but "
                "'model.layers.0.self_attn.o_proj.weight' has dtype BF16, not "
                "F8_E4M3");
}

}  // namespace
}  // namespace refit::exec
