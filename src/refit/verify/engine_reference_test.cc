#include "refit/verify/engine_reference.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "refit/core/quant/block_fp8.h"
#include "refit/io/safetensors.h"

namespace refit::verify {
namespace {

const std::string kRoot = REFIT_DATA_ROOT;
const std::string kQwenMoe = kRoot + "/data/checkpoints/agilerl-tiny-qwen3-moe";
const std::string kDeepseek =
    kRoot + "/data/checkpoints/neural-api-tiny/deepseek_v2";
const std::string kSmollm = kRoot + "/data/checkpoints/neural-api-tiny/smollm2";

std::string ReadText(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

struct Model {
  std::string config;
  io::Checkpoint ckpt;
};

Model Open(const std::string& dir) {
  auto ckpt = io::Checkpoint::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  return Model{ReadText(dir + "/config.json"), std::move(ckpt).value()};
}

std::map<std::string, EngineTensor> ByName(std::vector<EngineTensor> ts) {
  std::map<std::string, EngineTensor> m;
  for (auto& t : ts) {
    std::string n = t.name;
    m.emplace(std::move(n), std::move(t));
  }
  return m;
}

std::map<std::string, EngineTensor> Build(const Model& m, EngineFamily family,
                                          EngineRefLayout layout, int rank,
                                          int world,
                                          const EngineQuant* quant = nullptr) {
  auto r = BuildEngineReference(m.config, m.ckpt, family, layout, rank, world,
                                quant);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return {};
  return ByName(std::move(r).value());
}

// Bytes of rows [a, b) of a 2-D (or 1-D) checkpoint tensor.
std::vector<std::byte> Rows(const io::Checkpoint& c, const std::string& name,
                            int64_t a, int64_t b) {
  const io::TensorRef* t = c.Find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) return {};
  int64_t row = DTypeSize(t->info->dtype);
  for (size_t i = 1; i < t->info->shape.size(); ++i) row *= t->info->shape[i];
  return {t->data + a * row, t->data + b * row};
}

// Bytes of columns [a, b) of every row of a 2-D checkpoint tensor.
std::vector<std::byte> Cols(const io::Checkpoint& c, const std::string& name,
                            int64_t a, int64_t b) {
  const io::TensorRef* t = c.Find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) return {};
  const int64_t es = DTypeSize(t->info->dtype);
  const int64_t rows = t->info->shape[0], cols = t->info->shape[1];
  std::vector<std::byte> out;
  for (int64_t r = 0; r < rows; ++r) {
    out.insert(out.end(), t->data + (r * cols + a) * es,
               t->data + (r * cols + b) * es);
  }
  return out;
}

std::vector<std::byte> Cat(std::initializer_list<std::vector<std::byte>> ps) {
  std::vector<std::byte> out;
  for (const auto& p : ps) out.insert(out.end(), p.begin(), p.end());
  return out;
}

using Shape = std::vector<int64_t>;

// A checkpoint written from `src`'s tensors through `edit` (which appends the
// tensors to write for one source tensor) into a fresh temporary directory,
// opened with `config`. The directory is removed once the files are mapped.
struct OwnedTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> data;
};
using Edit = std::function<void(const std::string& name, const io::TensorRef&,
                                std::vector<OwnedTensor>& out)>;
Model Rewrite(const Model& src, const std::string& tag, std::string config,
              const Edit& edit) {
  const auto dir =
      std::filesystem::temp_directory_path() /
      ("refit_engine_ref_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::vector<OwnedTensor> owned;
  for (const std::string& n : src.ckpt.Names()) {
    edit(n, *src.ckpt.Find(n), owned);
  }
  std::vector<io::TensorToWrite> ts;
  for (const OwnedTensor& t : owned) {
    ts.push_back({t.name, t.dtype, t.shape, t.data.data(), {}});
  }
  const Status st =
      io::WriteSafetensors((dir / "model.safetensors").string(), ts, {});
  EXPECT_TRUE(st.ok()) << st.ToString();
  auto ckpt = io::Checkpoint::Open(dir.string());
  EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  std::filesystem::remove_all(dir);
  return Model{std::move(config), std::move(ckpt).value()};
}

OwnedTensor Copy(const std::string& name, const io::TensorRef& r) {
  return {name, r.info->dtype, r.info->shape,
          std::vector<std::byte>(r.data, r.data + r.info->nbytes)};
}

std::string Replace(std::string s, const std::string& from,
                    const std::string& to) {
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

// --- Qwen3-MoE (agilerl tiny: H 64, 4 heads x 16, 4 kv heads, 4 experts of
// I = 32, vocab 7, 2 layers, F32) at tp = 2, ep = 2, world 4. ---

TEST(EngineReferenceTest, QwenMoeVllmQkvRowsOfRanksHeads) {
  const Model m = Open(kQwenMoe);
  const EngineRefLayout layout{.tp = 2, .pp = 1, .ep = 2, .etp = 1};
  for (int rank = 0; rank < 4; ++rank) {
    const int r = rank % 2;  // tp_rank
    auto t = Build(m, EngineFamily::kVllm, layout, rank, 4);
    const std::string p = "model.layers.1.self_attn.";
    ASSERT_TRUE(t.contains(p + "qkv_proj.weight"));
    const EngineTensor& qkv = t.at(p + "qkv_proj.weight");
    EXPECT_EQ(qkv.shape, (Shape{96, 64}));
    EXPECT_EQ(qkv.dtype, DType::kF32);
    EXPECT_EQ(qkv.data,
              Cat({Rows(m.ckpt, p + "q_proj.weight", 32 * r, 32 * r + 32),
                   Rows(m.ckpt, p + "k_proj.weight", 32 * r, 32 * r + 32),
                   Rows(m.ckpt, p + "v_proj.weight", 32 * r, 32 * r + 32)}));
    const EngineTensor& o = t.at(p + "o_proj.weight");
    EXPECT_EQ(o.shape, (Shape{64, 32}));
    EXPECT_EQ(o.data, Cols(m.ckpt, p + "o_proj.weight", 32 * r, 32 * r + 32));
  }
}

TEST(EngineReferenceTest, QwenMoeVllmExpertsOfEpRank) {
  const Model m = Open(kQwenMoe);
  const EngineRefLayout layout{.tp = 2, .pp = 1, .ep = 2, .etp = 1};
  for (int rank = 0; rank < 4; ++rank) {
    const int ep_rank = rank % 2;
    auto t = Build(m, EngineFamily::kVllm, layout, rank, 4);
    const std::string p = "model.layers.0.mlp.";
    const EngineTensor& w13 = t.at(p + "experts.w13_weight");
    const EngineTensor& w2 = t.at(p + "experts.w2_weight");
    EXPECT_EQ(w13.shape, (Shape{2, 64, 64}));
    EXPECT_EQ(w2.shape, (Shape{2, 64, 32}));
    std::vector<std::byte> want13, want2;
    for (int j = 0; j < 2; ++j) {
      const std::string e =
          p + "experts." + std::to_string(ep_rank * 2 + j) + ".";
      want13 = Cat({want13, Rows(m.ckpt, e + "gate_proj.weight", 0, 32),
                    Rows(m.ckpt, e + "up_proj.weight", 0, 32)});
      want2 = Cat({want2, Rows(m.ckpt, e + "down_proj.weight", 0, 64)});
    }
    EXPECT_EQ(w13.data, want13);
    EXPECT_EQ(w2.data, want2);
    // Router: whole, F32.
    const EngineTensor& gate = t.at(p + "gate.weight");
    EXPECT_EQ(gate.shape, (Shape{4, 64}));
    EXPECT_EQ(gate.dtype, DType::kF32);
    EXPECT_EQ(gate.data, Rows(m.ckpt, p + "gate.weight", 0, 4));
  }
}

TEST(EngineReferenceTest, QwenMoeVllmExpertTensorParallel) {
  // tp = 2, ep = 2, etp = 2: etp_rank = rank % 2, ep_rank = rank / 2.
  const Model m = Open(kQwenMoe);
  const EngineRefLayout layout{.tp = 2, .pp = 1, .ep = 2, .etp = 2};
  for (int rank = 0; rank < 4; ++rank) {
    const int etp_rank = rank % 2, ep_rank = rank / 2;
    auto t = Build(m, EngineFamily::kSglang, layout, rank, 4);
    const std::string p = "model.layers.1.mlp.";
    const EngineTensor& w13 = t.at(p + "experts.w13_weight");
    const EngineTensor& w2 = t.at(p + "experts.w2_weight");
    EXPECT_EQ(w13.shape, (Shape{2, 32, 64}));
    EXPECT_EQ(w2.shape, (Shape{2, 64, 16}));
    std::vector<std::byte> want13, want2;
    const int64_t a = 16 * etp_rank, b = a + 16;
    for (int j = 0; j < 2; ++j) {
      const std::string e =
          p + "experts." + std::to_string(ep_rank * 2 + j) + ".";
      want13 = Cat({want13, Rows(m.ckpt, e + "gate_proj.weight", a, b),
                    Rows(m.ckpt, e + "up_proj.weight", a, b)});
      want2 = Cat({want2, Cols(m.ckpt, e + "down_proj.weight", a, b)});
    }
    EXPECT_EQ(w13.data, want13);
    EXPECT_EQ(w2.data, want2);
  }
}

TEST(EngineReferenceTest, QwenMoeVllmVocabPaddedTo64) {
  const Model m = Open(kQwenMoe);
  const EngineRefLayout layout{.tp = 2, .pp = 1, .ep = 2, .etp = 1};
  for (int rank = 0; rank < 4; ++rank) {
    auto t = Build(m, EngineFamily::kVllm, layout, rank, 4);
    for (const char* name : {"model.embed_tokens.weight", "lm_head.weight"}) {
      const EngineTensor& e = t.at(name);
      EXPECT_EQ(e.shape, (Shape{32, 64})) << name;  // V_pad 64 / tp 2
      std::vector<std::byte> want(32 * 64 * 4, std::byte{0});
      if (rank % 2 == 0) {
        const auto real = Rows(m.ckpt, name, 0, 7);
        std::memcpy(want.data(), real.data(), real.size());
      }
      EXPECT_EQ(e.data, want) << name << " rank " << rank;
    }
  }
}

TEST(EngineReferenceTest, QwenMoeVllmNamesOnRank) {
  const Model m = Open(kQwenMoe);
  const EngineRefLayout layout{.tp = 2, .pp = 1, .ep = 2, .etp = 1};
  auto t = Build(m, EngineFamily::kVllm, layout, 3, 4);
  std::vector<std::string> names;
  for (const auto& [n, _] : t) names.push_back(n);
  std::vector<std::string> want = {"lm_head.weight",
                                   "model.embed_tokens.weight"};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* s :
         {"input_layernorm.weight", "mlp.experts.w13_weight",
          "mlp.experts.w2_weight", "mlp.gate.weight",
          "post_attention_layernorm.weight", "self_attn.k_norm.weight",
          "self_attn.o_proj.weight", "self_attn.q_norm.weight",
          "self_attn.qkv_proj.weight"}) {
      want.push_back(p + s);
    }
  }
  want.push_back("model.norm.weight");
  EXPECT_EQ(names, want);
}

TEST(EngineReferenceTest, QwenMoePipelineStagesSplitLayers) {
  // tp = 2, pp = 2, world 4: ranks 0-1 stage 0 (layer 0, embedding), ranks
  // 2-3 stage 1 (layer 1, norm, lm_head).
  const Model m = Open(kQwenMoe);
  const EngineRefLayout layout{.tp = 2, .pp = 2, .ep = 1, .etp = 1};
  auto s0 = Build(m, EngineFamily::kVllm, layout, 1, 4);
  auto s1 = Build(m, EngineFamily::kVllm, layout, 2, 4);
  EXPECT_TRUE(s0.contains("model.embed_tokens.weight"));
  EXPECT_FALSE(s0.contains("lm_head.weight"));
  EXPECT_FALSE(s0.contains("model.norm.weight"));
  EXPECT_TRUE(s0.contains("model.layers.0.self_attn.qkv_proj.weight"));
  EXPECT_FALSE(s0.contains("model.layers.1.self_attn.qkv_proj.weight"));
  EXPECT_FALSE(s1.contains("model.embed_tokens.weight"));
  EXPECT_TRUE(s1.contains("lm_head.weight"));
  EXPECT_TRUE(s1.contains("model.norm.weight"));
  EXPECT_TRUE(s1.contains("model.layers.1.self_attn.qkv_proj.weight"));
  EXPECT_EQ(s1.at("model.layers.1.mlp.experts.w13_weight").shape,
            (Shape{4, 64, 64}));
}

// --- HF family: every checkpoint tensor, byte for byte. ---

TEST(EngineReferenceTest, HfReproducesCheckpointByteForByte) {
  for (const std::string& dir : {kQwenMoe, kDeepseek}) {
    const Model m = Open(dir);
    auto t = Build(m, EngineFamily::kHf, {}, 0, 1);
    const auto names = m.ckpt.Names();
    ASSERT_EQ(t.size(), names.size()) << dir;
    for (const std::string& n : names) {
      ASSERT_TRUE(t.contains(n)) << n;
      const io::TensorRef* ref = m.ckpt.Find(n);
      const EngineTensor& e = t.at(n);
      EXPECT_EQ(e.shape, ref->info->shape) << n;
      EXPECT_EQ(e.dtype, ref->info->dtype) << n;
      ASSERT_EQ(e.data.size(), ref->info->nbytes) << n;
      EXPECT_EQ(std::memcmp(e.data.data(), ref->data, e.data.size()), 0) << n;
    }
  }
}

TEST(EngineReferenceTest, HfPipelineAndExpertRanksPartitionTheCheckpoint) {
  // pp = 2, ep = 2, world 4: every checkpoint tensor on exactly one of the
  // ranks of an expert tensor, on both EP ranks of its stage otherwise.
  const Model m = Open(kQwenMoe);
  const EngineRefLayout layout{.tp = 1, .pp = 2, .ep = 2, .etp = 1};
  std::map<std::string, int> count;
  for (int rank = 0; rank < 4; ++rank) {
    for (const auto& [n, e] : Build(m, EngineFamily::kHf, layout, rank, 4)) {
      ++count[n];
      const io::TensorRef* ref = m.ckpt.Find(n);
      ASSERT_NE(ref, nullptr) << n;
      EXPECT_EQ(std::memcmp(e.data.data(), ref->data, e.data.size()), 0);
      if (n.find(".experts.") != std::string::npos) {
        const int expert = n[n.find(".experts.") + 9] - '0';
        EXPECT_EQ(expert / 2, rank % 2) << n << " on rank " << rank;
      }
    }
  }
  for (const std::string& n : m.ckpt.Names()) {
    EXPECT_EQ(count[n], n.find(".experts.") != std::string::npos ? 1 : 2) << n;
  }
}

// --- Llama (smollm2 tiny: 2 heads x 4, 1 kv head, tied, BF16). ---

TEST(EngineReferenceTest, LlamaKvHeadReplicatedAndTiedHead) {
  const Model m = Open(kSmollm);
  for (int rank = 0; rank < 2; ++rank) {
    auto t = Build(m, EngineFamily::kVllm, {.tp = 2}, rank, 2);
    const std::string p = "model.layers.0.";
    EXPECT_EQ(t.at(p + "self_attn.qkv_proj.weight").data,
              Cat({Rows(m.ckpt, p + "self_attn.q_proj.weight", 4 * rank,
                        4 * rank + 4),
                   Rows(m.ckpt, p + "self_attn.k_proj.weight", 0, 4),
                   Rows(m.ckpt, p + "self_attn.v_proj.weight", 0, 4)}));
    EXPECT_EQ(
        t.at(p + "mlp.gate_up_proj.weight").data,
        Cat({Rows(m.ckpt, p + "mlp.gate_proj.weight", 6 * rank, 6 * rank + 6),
             Rows(m.ckpt, p + "mlp.up_proj.weight", 6 * rank, 6 * rank + 6)}));
    EXPECT_EQ(t.at(p + "mlp.down_proj.weight").data,
              Cols(m.ckpt, p + "mlp.down_proj.weight", 6 * rank, 6 * rank + 6));
    EXPECT_FALSE(t.contains("lm_head.weight"));  // tied, pp = 1
  }
  // Tied, pp = 2: the last stage holds lm_head.weight = the embedding.
  auto last = Build(m, EngineFamily::kVllm, {.tp = 1, .pp = 2}, 1, 2);
  ASSERT_TRUE(last.contains("lm_head.weight"));
  EXPECT_FALSE(last.contains("model.embed_tokens.weight"));
  const EngineTensor& head = last.at("lm_head.weight");
  EXPECT_EQ(head.shape, (Shape{64, 8}));
  EXPECT_EQ(head.dtype, DType::kBF16);
  std::vector<std::byte> want(64 * 8 * 2, std::byte{0});
  const auto real = Rows(m.ckpt, "model.embed_tokens.weight", 0, 12);
  std::memcpy(want.data(), real.data(), real.size());
  EXPECT_EQ(head.data, want);
  auto hf_last = Build(m, EngineFamily::kHf, {.tp = 1, .pp = 2}, 1, 2);
  EXPECT_EQ(hf_last.at("lm_head.weight").shape, (Shape{12, 8}));
}

// --- DeepSeek-V2 tiny (MLA, q_lora_rank null) at tp = 2, ep = 2 with 4 x 4
// FP8 blocks. ---

bool QuantiseDeepseek(std::string_view n) {
  return n.ends_with("_proj.weight") || n.ends_with("_proj_with_mqa.weight");
}

// The scale grid of the whole HF tensor quantised with 4 x 4 blocks.
struct WholeQuant {
  std::vector<std::byte> data, scale;
  int64_t gr = 0, gc = 0, k = 0;
};
WholeQuant QuantWhole(const io::Checkpoint& c, const std::string& name) {
  const io::TensorRef* t = c.Find(name);
  WholeQuant w;
  const int64_t n = t->info->shape[0];
  w.k = t->info->shape[1];
  w.gr = (n + 3) / 4;
  w.gc = (w.k + 3) / 4;
  w.data.resize(n * w.k);
  w.scale.resize(w.gr * w.gc * 4);
  quant::BlockFp8Options o;
  o.block = {4, 4};
  EXPECT_TRUE(quant::QuantizeBlockFp8({t->data, t->info->nbytes},
                                      t->info->dtype, n, w.k, o, w.data,
                                      w.scale)
                  .ok());
  return w;
}
std::vector<std::byte> ScaleRows(const WholeQuant& w, int64_t r0, int64_t r1) {
  return {w.scale.begin() + r0 * w.gc * 4, w.scale.begin() + r1 * w.gc * 4};
}
std::vector<std::byte> DataRows(const WholeQuant& w, int64_t a, int64_t b) {
  return {w.data.begin() + a * w.k, w.data.begin() + b * w.k};
}

TEST(EngineReferenceTest, DeepseekFp8BlocksDataAndScaleShapes) {
  const Model m = Open(kDeepseek);
  EngineQuant q;
  q.block_rows = 4;
  q.block_cols = 4;
  q.quantised = QuantiseDeepseek;
  const EngineRefLayout layout{.tp = 2, .pp = 1, .ep = 2, .etp = 1};
  for (int rank = 0; rank < 2; ++rank) {
    auto t = Build(m, EngineFamily::kVllm, layout, rank, 2, &q);
    auto shape = [&](const std::string& n) { return t.at(n).shape; };
    auto dtype = [&](const std::string& n) { return t.at(n).dtype; };
    const std::string l0 = "model.layers.0.", l1 = "model.layers.1.";
    // q_proj [20, 8]: rows [10 r, +10) -> blocks 0-2 / 2-4.
    EXPECT_EQ(shape(l0 + "self_attn.q_proj.weight"), (Shape{10, 8}));
    EXPECT_EQ(dtype(l0 + "self_attn.q_proj.weight"), DType::kF8E4M3);
    EXPECT_EQ(shape(l0 + "self_attn.q_proj.weight_scale_inv"), (Shape{3, 2}));
    EXPECT_EQ(dtype(l0 + "self_attn.q_proj.weight_scale_inv"), DType::kF32);
    {
      const auto w = QuantWhole(m.ckpt, l0 + "self_attn.q_proj.weight");
      EXPECT_EQ(t.at(l0 + "self_attn.q_proj.weight").data,
                DataRows(w, 10 * rank, 10 * rank + 10));
      EXPECT_EQ(t.at(l0 + "self_attn.q_proj.weight_scale_inv").data,
                ScaleRows(w, rank == 0 ? 0 : 2, rank == 0 ? 3 : 5));
    }
    // kv_b_proj [24, 5]: rows [12 r, +12) -> 3 block rows, 2 block columns.
    EXPECT_EQ(shape(l1 + "self_attn.kv_b_proj.weight"), (Shape{12, 5}));
    EXPECT_EQ(shape(l1 + "self_attn.kv_b_proj.weight_scale_inv"),
              (Shape{3, 2}));
    // kv_a_proj_with_mqa [9, 8] whole.
    EXPECT_EQ(shape(l1 + "self_attn.kv_a_proj_with_mqa.weight"), (Shape{9, 8}));
    EXPECT_EQ(shape(l1 + "self_attn.kv_a_proj_with_mqa.weight_scale_inv"),
              (Shape{3, 2}));
    // o_proj [8, 12]: columns [6 r, +6) -> block columns 0-1 / 1-2 (block
    // column 1 on both ranks).
    EXPECT_EQ(shape(l0 + "self_attn.o_proj.weight"), (Shape{8, 6}));
    EXPECT_EQ(shape(l0 + "self_attn.o_proj.weight_scale_inv"), (Shape{2, 2}));
    {
      const auto w = QuantWhole(m.ckpt, l0 + "self_attn.o_proj.weight");
      std::vector<std::byte> want;
      for (int64_t r = 0; r < 2; ++r) {
        const auto* s = w.scale.data() + (r * w.gc + rank) * 4;
        want.insert(want.end(), s, s + 8);
      }
      EXPECT_EQ(t.at(l0 + "self_attn.o_proj.weight_scale_inv").data, want);
    }
    // Dense gate_up [gate 12; up 12] rows [6 r, +6) each -> 2 block rows each.
    EXPECT_EQ(shape(l0 + "mlp.gate_up_proj.weight"), (Shape{12, 8}));
    EXPECT_EQ(shape(l0 + "mlp.gate_up_proj.weight_scale_inv"), (Shape{4, 2}));
    {
      const auto g = QuantWhole(m.ckpt, l0 + "mlp.gate_proj.weight");
      const auto u = QuantWhole(m.ckpt, l0 + "mlp.up_proj.weight");
      EXPECT_EQ(
          t.at(l0 + "mlp.gate_up_proj.weight_scale_inv").data,
          Cat({ScaleRows(g, rank, rank + 2), ScaleRows(u, rank, rank + 2)}));
      EXPECT_EQ(t.at(l0 + "mlp.gate_up_proj.weight").data,
                Cat({DataRows(g, 6 * rank, 6 * rank + 6),
                     DataRows(u, 6 * rank, 6 * rank + 6)}));
    }
    // Shared experts gate_up [10; 10] rows [5 r, +5) -> blocks 0-1 / 1-2.
    EXPECT_EQ(shape(l1 + "mlp.shared_experts.gate_up_proj.weight"),
              (Shape{10, 8}));
    EXPECT_EQ(shape(l1 + "mlp.shared_experts.gate_up_proj.weight_scale_inv"),
              (Shape{4, 2}));
    EXPECT_EQ(shape(l1 + "mlp.shared_experts.down_proj.weight"), (Shape{8, 5}));
    EXPECT_EQ(shape(l1 + "mlp.shared_experts.down_proj.weight_scale_inv"),
              (Shape{2, 2}));
    // Routed experts (E 4, ep 2, I 5): w13 [2, 10, 8], w2 [2, 8, 5].
    EXPECT_EQ(shape(l1 + "mlp.experts.w13_weight"), (Shape{2, 10, 8}));
    EXPECT_EQ(dtype(l1 + "mlp.experts.w13_weight"), DType::kF8E4M3);
    EXPECT_EQ(shape(l1 + "mlp.experts.w13_weight_scale_inv"), (Shape{2, 4, 2}));
    EXPECT_EQ(shape(l1 + "mlp.experts.w2_weight"), (Shape{2, 8, 5}));
    EXPECT_EQ(shape(l1 + "mlp.experts.w2_weight_scale_inv"), (Shape{2, 2, 2}));
    {
      std::vector<std::byte> want;
      for (int j = 0; j < 2; ++j) {
        const std::string e =
            l1 + "mlp.experts." + std::to_string(rank * 2 + j) + ".";
        want = Cat({want, QuantWhole(m.ckpt, e + "gate_proj.weight").scale,
                    QuantWhole(m.ckpt, e + "up_proj.weight").scale});
      }
      EXPECT_EQ(t.at(l1 + "mlp.experts.w13_weight_scale_inv").data, want);
    }
    // Router and norms: not quantised; no scale.
    EXPECT_EQ(dtype(l1 + "mlp.gate.weight"), DType::kF32);
    EXPECT_FALSE(t.contains(l1 + "mlp.gate.weight_scale_inv"));
    EXPECT_EQ(dtype(l1 + "self_attn.kv_a_layernorm.weight"), DType::kF32);
    EXPECT_EQ(shape("model.embed_tokens.weight"), (Shape{32, 8}));
  }
}

TEST(EngineReferenceTest, DeepseekFusedQkvANamesPerEngine) {
  // A DeepSeek checkpoint with q_lora_rank: write one (q_a_proj [3, 8],
  // q_a_layernorm, q_b_proj [20, 3]) from the tiny checkpoint's tensors.
  const Model src = Open(kDeepseek);
  const auto dir =
      std::filesystem::temp_directory_path() / "refit_engine_ref_qlora";
  std::filesystem::create_directories(dir);
  std::vector<io::TensorToWrite> ts;
  std::vector<std::vector<std::byte>> extra;
  for (const std::string& n : src.ckpt.Names()) {
    const io::TensorRef* r = src.ckpt.Find(n);
    if (n.ends_with("self_attn.q_proj.weight")) {
      const std::string l =
          n.substr(0, n.size() - std::strlen("q_proj.weight"));
      extra.emplace_back(3 * 8 * 4, std::byte{1});
      ts.push_back({l + "q_a_proj.weight",
                    DType::kF32,
                    {3, 8},
                    extra.back().data(),
                    {}});
      extra.emplace_back(3 * 4, std::byte{2});
      ts.push_back({l + "q_a_layernorm.weight",
                    DType::kF32,
                    {3},
                    extra.back().data(),
                    {}});
      extra.emplace_back(20 * 3 * 4, std::byte{3});
      ts.push_back({l + "q_b_proj.weight",
                    DType::kF32,
                    {20, 3},
                    extra.back().data(),
                    {}});
      continue;
    }
    ts.push_back({n, r->info->dtype, r->info->shape, r->data, {}});
  }
  ASSERT_TRUE(
      io::WriteSafetensors((dir / "model.safetensors").string(), ts, {}).ok());
  auto ckpt = io::Checkpoint::Open(dir.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  std::string config = src.config;
  const size_t at = config.find("\"q_lora_rank\": null");
  ASSERT_NE(at, std::string::npos);
  config.replace(at, std::strlen("\"q_lora_rank\": null"),
                 "\"q_lora_rank\": 3");
  Model m{config, std::move(ckpt).value()};
  const std::string p = "model.layers.0.self_attn.";
  auto v = Build(m, EngineFamily::kVllm, {.tp = 2, .ep = 2}, 1, 2);
  auto s = Build(m, EngineFamily::kSglang, {.tp = 2, .ep = 2}, 1, 2);
  ASSERT_TRUE(v.contains(p + "fused_qkv_a_proj.weight"));
  ASSERT_TRUE(s.contains(p + "fused_qkv_a_proj_with_mqa.weight"));
  EXPECT_FALSE(v.contains(p + "q_a_proj.weight"));
  EXPECT_FALSE(v.contains(p + "kv_a_proj_with_mqa.weight"));
  EXPECT_EQ(v.at(p + "fused_qkv_a_proj.weight").shape, (Shape{12, 8}));
  EXPECT_EQ(v.at(p + "fused_qkv_a_proj.weight").data,
            Cat({Rows(m.ckpt, p + "q_a_proj.weight", 0, 3),
                 Rows(m.ckpt, p + "kv_a_proj_with_mqa.weight", 0, 9)}));
  EXPECT_EQ(s.at(p + "fused_qkv_a_proj_with_mqa.weight").data,
            v.at(p + "fused_qkv_a_proj.weight").data);
  EXPECT_EQ(v.at(p + "q_b_proj.weight").data,
            Rows(m.ckpt, p + "q_b_proj.weight", 10, 20));
  EXPECT_TRUE(v.contains(p + "q_a_layernorm.weight"));
  std::filesystem::remove_all(dir);
}

// --- Stacked (transformers v5) experts give the same engine tensors. ---

TEST(EngineReferenceTest, StackedExpertsMatchPerExpert) {
  const Model per = Open(kQwenMoe);
  const auto dir =
      std::filesystem::temp_directory_path() / "refit_engine_ref_stacked";
  std::filesystem::create_directories(dir);
  std::vector<io::TensorToWrite> ts;
  std::vector<std::vector<std::byte>> stacked;
  stacked.reserve(4);
  for (const std::string& n : per.ckpt.Names()) {
    if (n.find(".experts.") != std::string::npos) continue;
    const io::TensorRef* r = per.ckpt.Find(n);
    ts.push_back({n, r->info->dtype, r->info->shape, r->data, {}});
  }
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".mlp.experts.";
    std::vector<std::byte> gu, down;
    for (int e = 0; e < 4; ++e) {
      const std::string x = p + std::to_string(e) + ".";
      gu = Cat({gu, Rows(per.ckpt, x + "gate_proj.weight", 0, 32),
                Rows(per.ckpt, x + "up_proj.weight", 0, 32)});
      down = Cat({down, Rows(per.ckpt, x + "down_proj.weight", 0, 64)});
    }
    stacked.push_back(std::move(gu));
    ts.push_back({p + "gate_up_proj",
                  DType::kF32,
                  {4, 64, 64},
                  stacked.back().data(),
                  {}});
    stacked.push_back(std::move(down));
    ts.push_back(
        {p + "down_proj", DType::kF32, {4, 64, 32}, stacked.back().data(), {}});
  }
  ASSERT_TRUE(
      io::WriteSafetensors((dir / "model.safetensors").string(), ts, {}).ok());
  auto ckpt = io::Checkpoint::Open(dir.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  const Model st{per.config, std::move(ckpt).value()};
  EngineQuant q;
  q.block_rows = 8;
  q.block_cols = 8;
  q.quantised = [](std::string_view n) {
    return n.find(".experts.") != std::string_view::npos;
  };
  const EngineRefLayout layout{.tp = 2, .pp = 1, .ep = 2, .etp = 2};
  for (const EngineQuant* quant : {static_cast<const EngineQuant*>(nullptr),
                                   static_cast<const EngineQuant*>(&q)}) {
    for (int rank = 0; rank < 4; ++rank) {
      auto a = Build(per, EngineFamily::kVllm, layout, rank, 4, quant);
      auto b = Build(st, EngineFamily::kVllm, layout, rank, 4, quant);
      ASSERT_EQ(a.size(), b.size());
      for (const auto& [n, t] : a) {
        ASSERT_TRUE(b.contains(n)) << n;
        EXPECT_EQ(t.shape, b.at(n).shape) << n;
        EXPECT_EQ(t.dtype, b.at(n).dtype) << n;
        EXPECT_EQ(t.data, b.at(n).data) << n;
      }
    }
  }
  // HF family: the stacked tensors cut to the EP rank's experts.
  auto hf = Build(st, EngineFamily::kHf, {.ep = 2}, 1, 2);
  EXPECT_EQ(hf.at("model.layers.0.mlp.experts.gate_up_proj").shape,
            (Shape{2, 64, 64}));
  EXPECT_EQ(hf.at("model.layers.0.mlp.experts.gate_up_proj").data,
            Rows(st.ckpt, "model.layers.0.mlp.experts.gate_up_proj", 2, 4));
  std::filesystem::remove_all(dir);
}

// --- Synthetic variants of the tiny checkpoints. ---

TEST(EngineReferenceTest, Bf16RouterWidenedToF32) {
  // The Qwen3-MoE router stored as BF16 (the high half of each F32).
  const Model src = Open(kQwenMoe);
  const Model m = Rewrite(src, "bf16router", src.config,
                          [](const std::string& n, const io::TensorRef& r,
                             std::vector<OwnedTensor>& out) {
                            if (!n.ends_with("mlp.gate.weight")) {
                              out.push_back(Copy(n, r));
                              return;
                            }
                            OwnedTensor t{n, DType::kBF16, r.info->shape, {}};
                            for (uint64_t i = 0; i < r.info->nbytes; i += 4) {
                              t.data.push_back(r.data[i + 2]);
                              t.data.push_back(r.data[i + 3]);
                            }
                            out.push_back(std::move(t));
                          });
  auto t = Build(m, EngineFamily::kVllm, {.tp = 2, .ep = 2}, 1, 2);
  const EngineTensor& gate = t.at("model.layers.0.mlp.gate.weight");
  EXPECT_EQ(gate.dtype, DType::kF32);
  EXPECT_EQ(gate.shape, (Shape{4, 64}));
  const io::TensorRef* bf = m.ckpt.Find("model.layers.0.mlp.gate.weight");
  ASSERT_EQ(gate.data.size(), 4 * 64 * 4u);
  for (size_t i = 0; i < 4 * 64; ++i) {  // exact: low half zero
    ASSERT_EQ(gate.data[4 * i], std::byte{0});
    ASSERT_EQ(gate.data[4 * i + 1], std::byte{0});
    ASSERT_EQ(gate.data[4 * i + 2], bf->data[2 * i]);
    ASSERT_EQ(gate.data[4 * i + 3], bf->data[2 * i + 1]);
  }
  // The HF family keeps the stored dtype.
  auto hf = Build(m, EngineFamily::kHf, {}, 0, 1);
  EXPECT_EQ(hf.at("model.layers.0.mlp.gate.weight").dtype, DType::kBF16);
}

TEST(EngineReferenceTest, MixtralNamesFromW1W3W2) {
  // The Qwen3-MoE experts renamed to Mixtral's block_sparse_moe w1/w2/w3.
  const Model src = Open(kQwenMoe);
  const std::string config =
      Replace(src.config, "\"qwen3_moe\"", "\"mixtral\"");
  const Model m = Rewrite(
      src, "mixtral", config,
      [](std::string n, const io::TensorRef& r, std::vector<OwnedTensor>& out) {
        for (auto [from, to] : std::vector<std::pair<std::string, std::string>>{
                 {".mlp.", ".block_sparse_moe."},
                 {"gate_proj", "w1"},
                 {"up_proj", "w3"},
                 {"down_proj", "w2"}}) {
          if (n.find(".experts.") == std::string::npos &&
              n.find(".mlp.gate.") == std::string::npos) {
            break;
          }
          const size_t at = n.find(from);
          if (at != std::string::npos) n.replace(at, from.size(), to);
        }
        out.push_back(Copy(n, r));
      });
  ASSERT_NE(m.ckpt.Find("model.layers.1.block_sparse_moe.experts.3.w3.weight"),
            nullptr);
  auto t = Build(m, EngineFamily::kVllm, {.tp = 2, .ep = 2, .etp = 2}, 3, 4);
  const std::string p = "model.layers.1.block_sparse_moe.";
  ASSERT_TRUE(t.contains(p + "experts.w13_weight"));
  ASSERT_TRUE(t.contains(p + "gate.weight"));
  // Rank 3: ep_rank 1 (experts 2, 3), etp_rank 1 (rows [16, 32)).
  std::vector<std::byte> want13, want2;
  for (int e = 2; e < 4; ++e) {
    const std::string x = p + "experts." + std::to_string(e) + ".";
    want13 = Cat({want13, Rows(m.ckpt, x + "w1.weight", 16, 32),
                  Rows(m.ckpt, x + "w3.weight", 16, 32)});
    want2 = Cat({want2, Cols(m.ckpt, x + "w2.weight", 16, 32)});
  }
  EXPECT_EQ(t.at(p + "experts.w13_weight").data, want13);
  EXPECT_EQ(t.at(p + "experts.w2_weight").data, want2);
}

TEST(EngineReferenceTest, QkvBiasSlicedLikeTheWeight) {
  // smollm2 as a Qwen2 with q/k/v biases (q 8 rows, k / v 4 rows).
  const Model src = Open(kSmollm);
  const std::string config = Replace(src.config, "\"llama\"", "\"qwen2\"");
  const Model m = Rewrite(
      src, "qkvbias", config,
      [](const std::string& n, const io::TensorRef& r,
         std::vector<OwnedTensor>& out) {
        out.push_back(Copy(n, r));
        for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
          const std::string w = std::string(proj) + ".weight";
          if (!n.ends_with(w)) continue;
          OwnedTensor b{n.substr(0, n.size() - w.size()) + proj + ".bias",
                        DType::kBF16,
                        {r.info->shape[0]},
                        {}};
          for (int64_t i = 0; i < r.info->shape[0] * 2; ++i) {
            b.data.push_back(static_cast<std::byte>(i + 16 * proj[0]));
          }
          out.push_back(std::move(b));
        }
      });
  for (int rank = 0; rank < 2; ++rank) {
    auto t = Build(m, EngineFamily::kSglang, {.tp = 2}, rank, 2);
    const std::string p = "model.layers.1.self_attn.";
    const EngineTensor& b = t.at(p + "qkv_proj.bias");
    EXPECT_EQ(b.shape, (Shape{12}));
    EXPECT_EQ(b.data,
              Cat({Rows(m.ckpt, p + "q_proj.bias", 4 * rank, 4 * rank + 4),
                   Rows(m.ckpt, p + "k_proj.bias", 0, 4),
                   Rows(m.ckpt, p + "v_proj.bias", 0, 4)}));
    EXPECT_FALSE(t.contains(p + "q_proj.bias"));
  }
}

// --- Errors. ---

TEST(EngineReferenceTest, ErrorsNameTheFieldOrTensor) {
  const Model m = Open(kQwenMoe);
  {  // tp = 3 does not divide the padded vocab (64) nor the heads.
    auto r = BuildEngineReference(m.config, m.ckpt, EngineFamily::kVllm,
                                  {.tp = 3}, 0, 3);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("not divisible by 3"),
              std::string::npos)
        << r.status().message();
  }
  {  // HF family with tp = 2.
    auto r = BuildEngineReference(m.config, m.ckpt, EngineFamily::kHf,
                                  {.tp = 2}, 0, 2);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("hf family: tp = 2"), std::string::npos)
        << r.status().message();
  }
  {  // Uneven pipeline split of 2 layers over 4 stages... 3 stages.
    auto r = BuildEngineReference(m.config, m.ckpt, EngineFamily::kVllm,
                                  {.pp = 3}, 0, 3);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("num_hidden_layers"), std::string::npos)
        << r.status().message();
  }
  {  // Experts not divisible by ep = 8 (4 experts).
    auto r = BuildEngineReference(m.config, m.ckpt, EngineFamily::kVllm,
                                  {.ep = 8}, 0, 8);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("expert count = 4"), std::string::npos)
        << r.status().message();
  }
  {  // Unsupported architecture.
    auto r = BuildEngineReference(R"({"model_type": "gpt_oss",
                                      "num_hidden_layers": 2})",
                                  m.ckpt, EngineFamily::kSglang, {}, 0, 1);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
    EXPECT_NE(r.status().message().find("gpt_oss"), std::string::npos);
  }
  {  // Rank outside the world.
    auto r =
        BuildEngineReference(m.config, m.ckpt, EngineFamily::kVllm, {}, 1, 1);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
  {  // A tensor the rules need is missing: untied smollm2 has no lm_head.
    const Model s = Open(kSmollm);
    std::string config = s.config;
    const size_t at = config.find("\"tie_word_embeddings\": true");
    ASSERT_NE(at, std::string::npos);
    config.replace(at, std::strlen("\"tie_word_embeddings\": true"),
                   "\"tie_word_embeddings\": false");
    auto r =
        BuildEngineReference(config, s.ckpt, EngineFamily::kVllm, {}, 0, 1);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
    EXPECT_NE(r.status().message().find("lm_head.weight"), std::string::npos);
  }
  {  // Block FP8 of a 1-D tensor.
    EngineQuant q;
    q.quantised = [](std::string_view n) { return n.ends_with("norm.weight"); };
    auto r = BuildEngineReference(m.config, m.ckpt, EngineFamily::kVllm, {}, 0,
                                  1, &q);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
    EXPECT_NE(r.status().message().find("norm.weight"), std::string::npos);
  }
}

}  // namespace
}  // namespace refit::verify
