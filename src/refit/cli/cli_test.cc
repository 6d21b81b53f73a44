// End-to-end tests of the `refit` command-line tool. Every test runs the
// built binary (REFIT_BINARY) as a child process and checks its exit status,
// its output and the files it writes:
//   * bit-exact `refit run` of the real checkpoints over many layout pairs,
//     with the JSON report's sizes checked against sizes worked out here from
//     `refit inspect` and the checkpoint header;
//   * `refit synth` + `refit run` for every supported architecture family;
//   * bad input: exit status 2 and one "refit: ..." line naming the problem;
//   * `refit run --save`: the per-rank safetensors files, byte for byte;
//   * `refit inspect` parameter totals of the large published configs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "refit/cli/cli_test_util.h"
#include "refit/core/layout.h"

namespace refit::cli {
namespace {

using namespace ::refit::cli::testing;  // NOLINT: the test helpers
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using Json = nlohmann::json;

constexpr char kNoSharedData[] =
    "REFIT_DATA_ROOT (" REFIT_DATA_ROOT ") holds no data/ folder";

fs::path SharedDir() { return fs::path(REFIT_DATA_ROOT) / "data"; }
bool HaveSharedData() { return fs::is_directory(SharedDir()); }

// The real checkpoint bundled with the sources (no shared data needed).
fs::path BundledCheckpoint() {
  return fs::path(REFIT_SOURCE_DIR) / "data" / "checkpoints" /
         "agilerl-tiny-qwen3-moe";
}

// A checkpoint of the shared data by its path under data/checkpoints, or the
// bundled one for "agilerl".
fs::path Checkpoint(std::string_view name) {
  if (name == "agilerl") return BundledCheckpoint();
  return SharedDir() / "checkpoints" / name;
}

// The header entries of every tensor of a checkpoint folder, over all its
// .safetensors files (single-file and sharded checkpoints).
Json CheckpointTensors(const fs::path& dir) {
  Json tensors = Json::object();
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".safetensors") continue;
    const SafetensorsContent st = ReadSafetensors(entry.path());
    for (const std::string& name : st.Names()) tensors[name] = st.header[name];
  }
  return tensors;
}

int64_t DTypeBytes(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "BF16" || dtype == "F16" || dtype == "I16") return 2;
  return 1;
}

// ---------------------------------------------------------------------------
// Layouts and the sizes a destination layout must end up holding.

// The sizes of a valid layout string, parsed by refit::core.
using LayoutSizes = ParallelConfig;

LayoutSizes ParseLayout(const std::string& text) {
  return *ParseParallelConfig(text);
}

// One row of the `refit inspect` table.
struct InspectRow {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype;
  std::string split;  // replicated, column, row, gated_column, vocab[(tied)]
  std::string group;  // tp or etp
  std::vector<std::string> hf_names;
};

std::vector<InspectRow> ParseInspect(const std::string& out) {
  std::vector<InspectRow> rows;
  for (const std::string& line : Lines(out)) {
    if (line.empty() || line[0] == '#' || line.starts_with("total_params:")) {
      continue;
    }
    const std::vector<std::string> w = Words(line);
    if (w.size() != 6) continue;
    InspectRow row{w[0], {}, w[2], w[3], w[4], {}};
    std::string dims = w[1].substr(1, w[1].size() - 2);
    std::istringstream shape(dims);
    for (std::string d; std::getline(shape, d, ',');) {
      row.shape.push_back(std::stoll(d));
    }
    std::istringstream hf(w[5]);
    for (std::string n; std::getline(hf, n, '+');) row.hf_names.push_back(n);
    rows.push_back(std::move(row));
  }
  return rows;
}

// The transformers v5 stacked tensor holding per-expert tensor `hf_name`
// ("P.experts.3.up_proj.weight" -> "P.experts.gate_up_proj"), or "".
std::string StackOf(const std::string& hf_name) {
  static const std::regex kExpert(
      R"(^(.*\.experts\.)\d+\.(gate|up|down)_proj\.weight$)");
  std::smatch m;
  if (!std::regex_match(hf_name, m, kExpert)) return "";
  return m[1].str() + (m[2].str() == "down" ? "down_proj" : "gate_up_proj");
}

struct DstTotals {
  int64_t tensors = 0;  // (rank, parameter) pairs of the destination
  int64_t bytes = 0;    // their bytes, vocabulary padding left out
};

// What the destination ranks hold all together, worked out from the
// parameter table: on the pp stage that builds a parameter, every rank holds
// a dense one, one rank in ep an expert one, and a split parameter is cut
// into tp (etp) shards. A tied output layer exists only when pp > 1. The
// element size is the checkpoint's unless the table says F32 (fp32 router
// tensors, and F32 parameters fed from 16-bit files).
DstTotals ExpectedDstTotals(const std::vector<InspectRow>& rows,
                            const Json& ckpt_tensors, const LayoutSizes& dst,
                            int world) {
  DstTotals t;
  for (const InspectRow& row : rows) {
    if (row.split.ends_with("(tied)") && dst.pp == 1) continue;
    int64_t elements = 1;
    for (int64_t d : row.shape) elements *= d;
    auto hf = ckpt_tensors.find(row.hf_names[0]);
    if (hf == ckpt_tensors.end())
      hf = ckpt_tensors.find(StackOf(row.hf_names[0]));
    const int64_t esize = row.dtype == "F32" || hf == ckpt_tensors.end()
                              ? 4
                              : DTypeBytes(hf->value("dtype", std::string()));
    const bool expert = row.group == "etp";
    const bool split = !row.split.starts_with("replicated");
    const int64_t holders = world / dst.pp / (expert ? dst.ep : 1);
    const int64_t shards = split ? (expert ? dst.expert_tp() : dst.tp) : 1;
    t.tensors += holders;
    t.bytes += elements * esize * holders / shards;
  }
  return t;
}

// ---------------------------------------------------------------------------
// `refit run`, checked for a bit-exact result.

// A pair of layouts: collocated on `world` ranks when world > 0, otherwise
// src_world source ranks followed by dst_world destination ranks.
struct RefitCase {
  const char* src;
  const char* dst;
  int world;
  int src_world;
  int dst_world;
};

std::ostream& operator<<(std::ostream& os, const RefitCase& c) {
  os << "--src " << c.src << " --dst " << c.dst;
  if (c.world > 0) return os << " --world " << c.world;
  return os << " --src-world " << c.src_world << " --dst-world " << c.dst_world;
}

std::vector<std::string> RunArgs(const fs::path& checkpoint,
                                 const RefitCase& c) {
  std::vector<std::string> args = {"run",   "--checkpoint", checkpoint.string(),
                                   "--src", c.src,          "--dst",
                                   c.dst,   "--iters",      "1"};
  if (c.world > 0) {
    args.insert(args.end(), {"--world", std::to_string(c.world)});
  } else {
    args.insert(args.end(), {"--src-world", std::to_string(c.src_world),
                             "--dst-world", std::to_string(c.dst_world)});
  }
  return args;
}

// Runs `c` on `checkpoint` and expects a bit-exact refit: exit 0, a table
// row ending in #wrong 0, and a JSON report whose mode, ranks and sizes are
// those of the layouts, tensor count and bytes as ExpectedDstTotals says.
void ExpectBitExactRefit(const fs::path& checkpoint, const RefitCase& c,
                         const TempDir& tmp) {
  SCOPED_TRACE(::testing::Message() << checkpoint << " " << c);
  const std::string json_path = tmp / "report.json";
  fs::remove(json_path);
  std::vector<std::string> args = RunArgs(checkpoint, c);
  args.insert(args.end(), {"--json", json_path});
  const CliResult r = RunCli(args);
  ASSERT_EQ(r.exit_code, 0) << r;
  const std::vector<std::string> row = TableRow(r.out);
  ASSERT_EQ(row.size(), 9u) << r;
  EXPECT_EQ(row.back(), "0") << r;

  const Json j = Json::parse(ReadFile(json_path), nullptr, false);
  ASSERT_TRUE(j.is_object()) << "no JSON report" << r;
  EXPECT_FALSE(fs::exists(json_path + ".tmp"));
  EXPECT_EQ(j.value("wrong", -1), 0) << j.dump(2);
  EXPECT_EQ(j.value("iters", -1), 1);
  EXPECT_EQ(std::to_string(j.value("tensors", int64_t{-1})), row[0]);
  const LayoutSizes src = ParseLayout(c.src), dst = ParseLayout(c.dst);
  EXPECT_EQ(j.value("src", ""), src.ToString());
  EXPECT_EQ(j.value("dst", ""), dst.ToString());
  const bool collocated = c.world > 0;
  const int src_world = collocated ? c.world : c.src_world;
  const int dst_world = collocated ? c.world : c.dst_world;
  EXPECT_EQ(j.value("mode", ""), collocated ? "collocated" : "non-collocated");
  EXPECT_EQ(j.value("ranks", -1),
            collocated ? c.world : c.src_world + c.dst_world);
  EXPECT_EQ(j.value("src_world", -1), src_world);
  EXPECT_EQ(j.value("dst_world", -1), dst_world);

  const CliResult inspect = RunCli({"inspect", checkpoint.string()});
  ASSERT_EQ(inspect.exit_code, 0) << inspect;
  const DstTotals want = ExpectedDstTotals(
      ParseInspect(inspect.out), CheckpointTensors(checkpoint), dst, dst_world);
  EXPECT_GT(want.tensors, 0);
  EXPECT_EQ(j.value("tensors", int64_t{-1}), want.tensors) << j.dump(2);
  EXPECT_EQ(
      j.value("bytes_remote", int64_t{0}) + j.value("bytes_local", int64_t{0}),
      want.bytes)
      << j.dump(2);
  // Non-collocated ranks hold no source shards: nothing is copied locally.
  if (!collocated) {
    EXPECT_EQ(j.value("bytes_local", int64_t{-1}), 0);
  }
  // Messages carry the remote bytes (none when every rank holds all of the
  // source, e.g. tp=1,ep=1 collocated).
  EXPECT_EQ(j.value("messages", int64_t{0}) > 0,
            j.value("bytes_remote", int64_t{0}) > 0)
      << j.dump(2);
}

// ---------------------------------------------------------------------------
// 1. Real checkpoints, bit-exact over many layout pairs.

struct RealCase {
  const char* name;        // test name suffix
  const char* checkpoint;  // see Checkpoint()
  RefitCase refit;
};

std::ostream& operator<<(std::ostream& os, const RealCase& c) {
  return os << c.name;
}

// agilerl-tiny-qwen3-moe: hidden 64, 4 heads / 4 KV heads, 2 layers, 4
// experts of width 32, F32, vocab 7. neural-api-tiny/qwen3_moe: hidden 8, 2
// heads / 1 KV head, head_dim 6, 4 experts of width 5 (etp 1), 2 layers.
// deepseek_v2: MLA, 2 heads, layer 0 dense (ffn 12), layer 1 MoE (4 experts
// of width 5, shared experts of width 10). smollm2: dense, tied, BF16.
constexpr RealCase kRealCases[] = {
    // agilerl (bundled).
    {"AgileRl_Default", "agilerl", {"tp=2,ep=2", "tp=1,ep=4", 4, 0, 0}},
    {"AgileRl_TpChange", "agilerl", {"tp=2,ep=2", "tp=4,ep=1", 4, 0, 0}},
    {"AgileRl_PpChange", "agilerl", {"tp=2", "tp=1,pp=2", 2, 0, 0}},
    {"AgileRl_UnevenPpFirst",
     "agilerl",
     {"tp=1,ep=2", "pp=2,pp_first=2", 2, 0, 0}},
    {"AgileRl_UnevenPpEmptyMiddle",
     "agilerl",
     {"tp=2", "pp=3,pp_first=1,pp_last=1", 6, 0, 0}},
    {"AgileRl_EtpNotTp",
     "agilerl",
     {"tp=2,etp=1,ep=2", "tp=4,etp=2,ep=2", 4, 0, 0}},
    {"AgileRl_EpChange", "agilerl", {"ep=1", "ep=4", 4, 0, 0}},
    {"AgileRl_Cp", "agilerl", {"tp=2,cp=2", "tp=1,ep=4", 4, 0, 0}},
    {"AgileRl_NonCollocated",
     "agilerl",
     {"tp=2,ep=2", "tp=1,pp=2,ep=2", 0, 4, 4}},
    {"AgileRl_NonCollocatedShrink",
     "agilerl",
     {"tp=4,etp=1,ep=4", "tp=1", 0, 4, 1}},
    // neural-api-tiny/qwen3_moe: tp in {1, 2}, etp must be 1.
    {"Qwen3Moe_TpChange",
     "neural-api-tiny/qwen3_moe",
     {"tp=1", "tp=2,etp=1", 2, 0, 0}},
    {"Qwen3Moe_PpChange",
     "neural-api-tiny/qwen3_moe",
     {"tp=2,etp=1", "pp=2", 2, 0, 0}},
    {"Qwen3Moe_UnevenPpFirst",
     "neural-api-tiny/qwen3_moe",
     {"tp=2,etp=1,ep=2", "pp=2,pp_first=2,ep=2", 4, 0, 0}},
    {"Qwen3Moe_UnevenPpEmptyMiddle",
     "neural-api-tiny/qwen3_moe",
     {"tp=2,etp=1", "pp=3,pp_first=1,pp_last=1", 6, 0, 0}},
    {"Qwen3Moe_EtpNotTp",
     "neural-api-tiny/qwen3_moe",
     {"tp=2,etp=1,ep=2", "tp=1,ep=4", 4, 0, 0}},
    {"Qwen3Moe_EpChange",
     "neural-api-tiny/qwen3_moe",
     {"ep=2", "ep=4", 4, 0, 0}},
    {"Qwen3Moe_NonCollocated",
     "neural-api-tiny/qwen3_moe",
     {"tp=2,etp=1,ep=2", "tp=1,pp=2,ep=2", 0, 2, 4}},
    // neural-api-tiny/deepseek_v2: tp in {1, 2}, etp must be 1.
    {"DeepseekV2_TpChange",
     "neural-api-tiny/deepseek_v2",
     {"tp=1", "tp=2,etp=1", 2, 0, 0}},
    {"DeepseekV2_PpChange",
     "neural-api-tiny/deepseek_v2",
     {"tp=2,etp=1", "pp=2", 2, 0, 0}},
    {"DeepseekV2_UnevenPpEmptyFirst",
     "neural-api-tiny/deepseek_v2",
     {"tp=2,etp=1,ep=2", "pp=2,pp_first=0,ep=2", 4, 0, 0}},
    {"DeepseekV2_UnevenPpEmptyMiddle",
     "neural-api-tiny/deepseek_v2",
     {"tp=2,etp=1", "pp=3,pp_first=1,pp_last=1", 6, 0, 0}},
    {"DeepseekV2_EtpNotTp",
     "neural-api-tiny/deepseek_v2",
     {"tp=2,etp=1,ep=4", "tp=1,ep=2", 4, 0, 0}},
    {"DeepseekV2_EpChange",
     "neural-api-tiny/deepseek_v2",
     {"ep=4", "ep=1", 4, 0, 0}},
    {"DeepseekV2_NonCollocated",
     "neural-api-tiny/deepseek_v2",
     {"tp=2,etp=1,ep=2", "tp=2,etp=1,pp=2,ep=2", 0, 2, 4}},
    // neural-api-tiny/smollm2: dense, tied embeddings, tp in {1, 2}.
    {"Smollm2_TpChange", "neural-api-tiny/smollm2", {"tp=1", "tp=2", 2, 0, 0}},
    {"Smollm2_PpChange", "neural-api-tiny/smollm2", {"tp=2", "pp=2", 2, 0, 0}},
    {"Smollm2_UnevenPpEmptyLast",
     "neural-api-tiny/smollm2",
     {"tp=2", "pp=2,pp_first=2", 4, 0, 0}},
    {"Smollm2_UnevenPpEmptyMiddle",
     "neural-api-tiny/smollm2",
     {"tp=2", "pp=3,pp_first=1,pp_last=1", 6, 0, 0}},
    {"Smollm2_EtpNotTp",
     "neural-api-tiny/smollm2",
     {"tp=2,etp=1", "tp=1,pp=2", 2, 0, 0}},
    {"Smollm2_NonCollocated",
     "neural-api-tiny/smollm2",
     {"tp=2", "pp=2", 0, 2, 2}},
    {"Smollm2_NonCollocatedGrow",
     "neural-api-tiny/smollm2",
     {"pp=2", "tp=2,cp=2", 0, 2, 4}},
};

class RealCheckpointTest : public ::testing::TestWithParam<RealCase> {
 protected:
  TempDir tmp_;
};

TEST_P(RealCheckpointTest, RefitIsBitExact) {
  const RealCase& c = GetParam();
  if (std::string_view(c.checkpoint) != "agilerl" && !HaveSharedData()) {
    GTEST_SKIP() << kNoSharedData;
  }
  ExpectBitExactRefit(Checkpoint(c.checkpoint), c.refit, tmp_);
}

INSTANTIATE_TEST_SUITE_P(Layouts, RealCheckpointTest,
                         ::testing::ValuesIn(kRealCases),
                         [](const ::testing::TestParamInfo<RealCase>& info) {
                           return std::string(info.param.name);
                         });

// ---------------------------------------------------------------------------
// 2. Synthetic checkpoints of every supported family.

struct SynthCase {
  const char* name;
  const char* config;          // config.json
  int layers;                  // num_hidden_layers of `config`
  int64_t total_params;        // by the formulas of reference/param_counts.md
  const char* hf_tensor;       // a tensor the checkpoint must hold
  const char* megatron_param;  // a parameter `refit inspect` must list
  std::array<RefitCase, 3> refits;
};

std::ostream& operator<<(std::ostream& os, const SynthCase& c) {
  return os << c.name;
}

// Scaled-down configs: hidden 64, 4 heads of 16, vocab 1000 (not a multiple
// of 128, so vocabulary shards are padded), BF16.
constexpr SynthCase kSynthCases[] = {
    {"Mixtral",
     R"({"architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
         "hidden_size": 64, "intermediate_size": 32, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 2,
         "num_local_experts": 4, "num_experts_per_tok": 2,
         "vocab_size": 1000, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
         "tie_word_embeddings": false, "torch_dtype": "bfloat16"})",
     4,
     277056,
     "model.layers.3.block_sparse_moe.experts.3.w2.weight",
     "decoder.layers.3.mlp.experts.linear_fc2.weight3",
     {{{"tp=4", "tp=2,pp=2,ep=2,etp=1", 4, 0, 0},
       {"tp=2,ep=2", "tp=1,pp=2,ep=2", 0, 4, 4},
       {"tp=2,ep=2", "pp=4,pp_first=0,pp_last=2", 4, 0, 0}}}},
    {"Olmoe",
     R"({"architectures": ["OlmoeForCausalLM"], "model_type": "olmoe",
         "hidden_size": 64, "intermediate_size": 32, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 4,
         "num_experts": 8, "num_experts_per_tok": 2, "clip_qkv": null,
         "vocab_size": 1000, "tie_word_embeddings": false,
         "torch_dtype": "bfloat16"})",
     4,
     393280,
     "model.layers.0.self_attn.q_norm.weight",
     "decoder.layers.0.self_attention.k_layernorm.weight",
     {{{"tp=4,ep=1", "tp=2,pp=2,ep=2,etp=1", 4, 0, 0},
       {"tp=2,etp=1,ep=4", "tp=4,ep=2,etp=2", 0, 4, 4},
       {"tp=2,ep=2", "pp=2,pp_first=3,ep=2", 4, 0, 0}}}},
    {"Glm4Moe",
     R"({"architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe",
         "hidden_size": 64, "intermediate_size": 128,
         "moe_intermediate_size": 32, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
         "n_routed_experts": 8, "n_shared_experts": 1,
         "num_experts_per_tok": 2, "first_k_dense_replace": 1,
         "n_group": 1, "topk_group": 1, "partial_rotary_factor": 0.5,
         "use_qk_norm": true, "attention_bias": true,
         "num_nextn_predict_layers": 1, "vocab_size": 1000,
         "tie_word_embeddings": false, "torch_dtype": "bfloat16"})",
     4,
     370392,
     "model.layers.1.mlp.gate.e_score_correction_bias",
     "decoder.layers.1.mlp.shared_experts.linear_fc1.weight",
     {{{"tp=1,ep=1", "tp=2,pp=2,ep=2,etp=1", 4, 0, 0},
       {"tp=2,etp=1,ep=2", "tp=4,ep=4,etp=1", 0, 2, 4},
       {"tp=2,ep=2", "pp=2,pp_first=1,ep=2", 4, 0, 0}}}},
    {"MiniMaxM2",
     R"({"architectures": ["MiniMaxM2ForCausalLM"], "model_type": "minimax_m2",
         "hidden_size": 64, "intermediate_size": 32, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
         "rotary_dim": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
         "scoring_func": "sigmoid", "use_routing_bias": true,
         "use_qk_norm": true, "qk_norm_type": "per_layer",
         "shared_intermediate_size": 0, "vocab_size": 1000,
         "tie_word_embeddings": false, "torch_dtype": "bfloat16"})",
     4,
     376800,
     "model.layers.2.block_sparse_moe.e_score_correction_bias",
     "decoder.layers.2.mlp.router.expert_bias",
     {{{"tp=4,ep=1", "tp=2,pp=2,ep=2,etp=1", 4, 0, 0},
       {"tp=2,ep=2", "tp=1,pp=4,ep=1", 0, 4, 4},
       {"tp=2,etp=1,ep=2", "pp=3,pp_first=1,pp_last=1,ep=2", 6, 0, 0}}}},
    {"KimiK2",
     R"({"architectures": ["DeepseekV3ForCausalLM"], "model_type": "kimi_k2",
         "hidden_size": 64, "intermediate_size": 128,
         "moe_intermediate_size": 32, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 4,
         "n_routed_experts": 8, "n_shared_experts": 1,
         "num_experts_per_tok": 2, "first_k_dense_replace": 1,
         "moe_layer_freq": 1, "n_group": 1, "topk_group": 1,
         "topk_method": "noaux_tc", "scoring_func": "sigmoid",
         "q_lora_rank": 32, "kv_lora_rank": 16, "qk_nope_head_dim": 16,
         "qk_rope_head_dim": 8, "v_head_dim": 16, "vocab_size": 1000,
         "num_nextn_predict_layers": 0, "tie_word_embeddings": false,
         "torch_dtype": "bfloat16"})",
     4,
     371992,
     "model.layers.0.self_attn.q_a_layernorm.weight",
     "decoder.layers.3.mlp.router.expert_bias",
     {{{"tp=1", "tp=2,pp=2,ep=2,etp=1", 4, 0, 0},
       {"tp=4,ep=2,etp=2", "tp=2,pp=2,ep=4,etp=1", 0, 4, 8},
       {"ep=4", "pp=2,pp_last=1", 4, 0, 0}}}},
    {"Qwen2",
     R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
         "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 1000, "tie_word_embeddings": true,
         "torch_dtype": "bfloat16"})",
     4,
     212544,
     "model.layers.3.self_attn.v_proj.bias",
     "decoder.layers.3.self_attention.linear_qkv.bias",
     {{{"tp=1", "tp=2,pp=2", 4, 0, 0},
       {"tp=4,etp=1", "tp=2,pp=2,etp=1", 4, 0, 0},
       {"tp=2", "tp=1,pp=4,pp_first=1,pp_last=1", 0, 2, 4}}}},
    {"Llama",
     R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
         "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
         "vocab_size": 1000, "tie_word_embeddings": false,
         "torch_dtype": "bfloat16"})",
     4,
     276032,
     "lm_head.weight",
     "decoder.layers.3.mlp.linear_fc2.weight",
     {{{"tp=4", "tp=1,cp=2,pp=2", 4, 0, 0},
       {"tp=2,etp=1,pp=2", "tp=4", 0, 4, 4},
       {"tp=2", "pp=4,pp_first=2,pp_last=2", 4, 0, 0}}}},
    {"Qwen3MoeSparseStep",
     R"({"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
         "hidden_size": 64, "intermediate_size": 128,
         "moe_intermediate_size": 32, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
         "num_experts": 8, "num_experts_per_tok": 2,
         "decoder_sparse_step": 2, "mlp_only_layers": [3],
         "vocab_size": 1000, "tie_word_embeddings": false,
         "torch_dtype": "bfloat16"})",
     4,
     301248,
     "model.layers.1.mlp.experts.7.up_proj.weight",
     "decoder.layers.3.mlp.linear_fc1.weight",
     {{{"tp=4,ep=1", "tp=2,pp=2,ep=2,etp=1", 4, 0, 0},
       {"tp=2,etp=1,ep=4", "tp=1,pp=2,ep=2", 0, 4, 4},
       {"tp=2,ep=2", "pp=2,pp_first=1,ep=2", 4, 0, 0}}}},
    {"Qwen3",
     R"({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
         "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
         "vocab_size": 1000, "tie_word_embeddings": true,
         "torch_dtype": "bfloat16"})",
     4,
     212160,
     "model.layers.0.self_attn.k_norm.weight",
     "decoder.layers.0.self_attention.q_layernorm.weight",
     {{{"tp=2", "tp=4,pp=1", 4, 0, 0},
       {"tp=4,etp=1", "tp=1,pp=4,pp_first=2,pp_last=0", 4, 0, 0},
       {"tp=2,pp=2", "tp=2,pp=2", 0, 4, 4}}}},
    {"Mllama",
     R"({"architectures": ["MllamaForConditionalGeneration"],
         "model_type": "mllama", "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 3, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 16,
         "cross_attention_layers": [1], "vocab_size": 1000,
         "tie_word_embeddings": false, "torch_dtype": "bfloat16"})",
     3,
     239586,
     "language_model.model.layers.1.cross_attn.k_norm.weight",
     "decoder.layers.1.cross_attention.linear_kv.weight",
     {{{"tp=1", "tp=2,pp=2,pp_first=1", 4, 0, 0},
       {"tp=4", "tp=2,pp=3,etp=1", 0, 4, 6},
       {"tp=2,pp=2,pp_first=2", "tp=4", 4, 0, 0}}}},
};

class SynthFamilyTest : public ::testing::TestWithParam<SynthCase> {
 protected:
  TempDir tmp_;
};

TEST_P(SynthFamilyTest, SynthThenRefitIsBitExact) {
  const SynthCase& c = GetParam();
  const std::string config = tmp_ / "config.json";
  const fs::path ckpt = tmp_.path() / "ckpt";
  ASSERT_NO_FATAL_FAILURE(WriteFile(config, c.config));

  const CliResult synth =
      RunCli({"synth", "--config", config, "--out", ckpt.string()});
  ASSERT_EQ(synth.exit_code, 0) << synth;
  EXPECT_THAT(synth.out,
              HasSubstr("(" + std::to_string(c.layers) + " layers, " +
                        std::to_string(c.total_params) + " params)"));

  const CliResult inspect = RunCli({"inspect", ckpt.string()});
  ASSERT_EQ(inspect.exit_code, 0) << inspect;
  EXPECT_EQ(Lines(inspect.out).back(),
            "total_params: " + std::to_string(c.total_params));
  EXPECT_THAT(inspect.out, HasSubstr(c.megatron_param));

  const SafetensorsContent st = ReadSafetensors(ckpt / "model.safetensors");
  ASSERT_TRUE(st.header.is_object());
  EXPECT_TRUE(st.Has(c.hf_tensor)) << c.hf_tensor;
  int64_t elements = 0;
  for (const std::string& name : st.Names()) {
    int64_t n = 1;
    for (int64_t d : st.Shape(name)) n *= d;
    elements += n;
    // Routers and expert biases may be F32; everything else is BF16.
    if (name.find("gate.weight") == std::string::npos &&
        name.find("e_score_correction_bias") == std::string::npos) {
      EXPECT_EQ(st.DType(name), "BF16") << name;
    }
  }
  EXPECT_EQ(elements, c.total_params);

  for (const RefitCase& refit : c.refits) {
    ExpectBitExactRefit(ckpt, refit, tmp_);
  }
  // Straight into vLLM's and SGLang's tensors, checked against the engine
  // reference (engine layouts need no cross attention: Mllama is refused).
  if (std::string_view(c.name) == "Mllama") return;
  for (const char* family : {"vllm", "sglang"}) {
    SCOPED_TRACE(family);
    const std::string json_path = tmp_ / "engine.json";
    const CliResult r =
        RunCli({"run", "--checkpoint", ckpt.string(), "--src", "tp=2,pp=2",
                "--dst", "tp=4", "--dst-family", family, "--world", "4",
                "--iters", "1", "--json", json_path});
    ASSERT_EQ(r.exit_code, 0) << r;
    const Json j = Json::parse(ReadFile(json_path), nullptr, false);
    EXPECT_EQ(j.value("engine_wrong", -1), 0) << r;
    EXPECT_GT(j.value("engine_checked_tensors", 0), 20) << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, SynthFamilyTest,
                         ::testing::ValuesIn(kSynthCases),
                         [](const ::testing::TestParamInfo<SynthCase>& info) {
                           return std::string(info.param.name);
                         });

// ---------------------------------------------------------------------------
// The fixture of the single tests below: a temp dir per test.

class CliTest : public ::testing::Test {
 protected:
  // Writes `config` into a new folder `name` of the temp dir and synthesizes
  // its checkpoint there; returns the folder.
  std::string Synth(const std::string& name, const std::string& config,
                    std::vector<std::string> extra = {}) {
    const std::string dir = tmp_ / name;
    fs::create_directories(dir);
    WriteFile(dir + "/source.json", config);
    std::vector<std::string> args = {"synth", "--config", dir + "/source.json",
                                     "--out", dir};
    args.insert(args.end(), extra.begin(), extra.end());
    const CliResult r = RunCli(args);
    EXPECT_EQ(r.exit_code, 0) << r;
    return dir;
  }

  TempDir tmp_;
};

// A small Llama / Qwen2 config with `hidden` hidden size.
std::string DenseConfig(const std::string& architecture, int hidden) {
  return R"({"architectures": [")" + architecture + R"("], "hidden_size": )" +
         std::to_string(hidden) +
         R"(, "intermediate_size": 64, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 16, "vocab_size": 300,
            "torch_dtype": "bfloat16"})";
}

// A transformers-v5-style checkpoint (experts stacked per layer) written by
// refit synth --stacked-experts refits bit-exact, in BF16 and in block FP8.
TEST_F(CliTest, SynthStackedExpertsThenRefitIsBitExact) {
  const std::string dir = Synth("stacked",
                                R"({"architectures": ["Qwen3MoeForCausalLM"],
                "hidden_size": 64, "moe_intermediate_size": 32,
                "intermediate_size": 96, "num_hidden_layers": 2,
                "num_attention_heads": 8, "num_key_value_heads": 4,
                "head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2,
                "vocab_size": 1000, "torch_dtype": "bfloat16"})",
                                {"--stacked-experts"});
  const SafetensorsContent st = ReadSafetensors(dir + "/model.safetensors");
  EXPECT_TRUE(st.Has("model.layers.1.mlp.experts.gate_up_proj"));
  EXPECT_EQ(st.Shape("model.layers.1.mlp.experts.gate_up_proj"),
            (std::vector<int64_t>{4, 64, 64}));
  EXPECT_FALSE(st.Has("model.layers.1.mlp.experts.0.gate_proj.weight"));
  ExpectBitExactRefit(dir, {"tp=2,ep=2", "tp=1,ep=4", 4, 0, 0}, tmp_);
  // Block FP8 stacked: the scales stacked alike, gate blocks then up blocks.
  const std::string fp8 = tmp_ / "fp8";
  const CliResult w =
      RunCli({"synth", "--config", dir + "/source.json", "--out", fp8,
              "--dtype", "fp8-block", "--stacked-experts"});
  ASSERT_EQ(w.exit_code, 0) << w;
  const SafetensorsContent q = ReadSafetensors(fp8 + "/model.safetensors");
  EXPECT_EQ(q.Shape("model.layers.1.mlp.experts.gate_up_proj_scale_inv"),
            (std::vector<int64_t>{4, 2, 1}));
  // Dequantised (GQA interleaves q rows, so keep refuses this model; kept
  // stacked FP8 is Fp8Checkpoint.StackedExpertsReadLikePerExpert's).
  const CliResult r =
      RunCli({"run", "--checkpoint", fp8, "--src", "tp=2,ep=2", "--dst",
              "tp=1,ep=4", "--world", "4", "--iters", "1"});
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(TableRow(r.out).back(), "0") << r;
}

// ---------------------------------------------------------------------------
// 3. Bad input.

// Sender-side block FP8 between equal TP cuts: row-parallel shards travel
// as one run each and must still be quantised as [rows, shard width] boxes.
TEST_F(CliTest, SenderSideFp8BetweenEqualTpCutsIsBitExact) {
  for (const char* world : {"--world", "--src-world"}) {
    std::vector<std::string> args = {"run",
                                     "--checkpoint",
                                     Checkpoint("agilerl").string(),
                                     "--src",
                                     "tp=2",
                                     "--dst",
                                     "tp=2",
                                     world,
                                     "2",
                                     "--iters",
                                     "1",
                                     "--dst-dtype",
                                     "fp8-block",
                                     "--fp8-block",
                                     "32",
                                     "--quantize-on",
                                     "send"};
    if (std::string_view(world) == "--src-world") {
      args.insert(args.end(), {"--dst-world", "2"});
    }
    const CliResult r = RunCli(args);
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_EQ(TableRow(r.out).back(), "0") << r;
  }
}

// --dst-family: the destination holds an engine's tensors (vLLM, SGLang) or
// whole HF tensors; every one, by name, equals the independent engine
// reference built from the checkpoint (verify/engine_reference.h), besides
// the usual per-shard check. Covers the QKV order, one KV head replicated
// over TP (smollm2), vocabulary padding, stacked FusedMoE experts, MLA and
// block-FP8 engine tensors with their scales (DeepSeek-V2, 4 x 4 blocks).
TEST_F(CliTest, EngineFamiliesEqualTheEngineReference) {
  struct Case {
    const char* checkpoint;
    const char* src;
    const char* dst;
    const char* family;
    std::vector<std::string> extra;
  };
  const std::vector<Case> cases = {
      // --baseline: the memcpy baseline overwrites the destination between
      // the checks; the timed refits must leave the engine's bytes again.
      {"agilerl", "tp=2,ep=2", "tp=2,ep=2", "vllm", {"--baseline"}},
      {"agilerl", "tp=2,ep=2", "tp=2,ep=2", "sglang", {}},
      {"agilerl", "tp=2,ep=2", "tp=1,ep=2", "hf", {}},
      {"agilerl", "tp=1,ep=4", "tp=2,pp=2,ep=2,etp=1", "vllm", {}},
      {"neural-api-tiny/smollm2", "tp=1", "tp=2", "vllm", {}},
      // EPLB: 12 slots for 4 experts, each on 3 of the 4 EP ranks.
      {"agilerl",
       "tp=2,ep=2",
       "tp=1,ep=4,etp=1,placement=0:1:2:3:1:2:3:0:2:3:0:1",
       "vllm",
       {}},
      {"neural-api-tiny/deepseek_v2",
       "tp=2,ep=2,etp=1",
       "tp=2,ep=4,etp=1",
       "vllm",
       {"--dst-dtype", "fp8-block", "--fp8-block", "4"}},
      {"neural-api-tiny/deepseek_v2",
       "tp=1,ep=4,etp=1",
       "tp=2,pp=2,ep=2,etp=1",
       "sglang",
       {"--dst-dtype", "fp8-block", "--fp8-block", "4", "--quantize-on",
        "recv"}},
      // w13 as [up; gate] (load_up_proj_weight_first), with its FP8 scales.
      {"agilerl",
       "tp=2,ep=2",
       "tp=2,ep=2,etp=1,w13=up_gate",
       "sglang",
       {"--dst-dtype", "fp8-block", "--fp8-block", "16"}},
      {"neural-api-tiny/deepseek_v2",
       "tp=2,ep=2,etp=1",
       "tp=1,ep=4,w13=up_gate",
       "vllm",
       {}},
      // MXFP8 into the engines' fused and stacked tensors, with plain and
      // with swizzled scales (swizzled per expert of a stack).
      {"agilerl", "tp=2,ep=2", "tp=1,ep=4", "vllm", {"--dst-dtype", "mxfp8"}},
      {"agilerl",
       "tp=2,ep=2",
       "tp=1,ep=4",
       "sglang",
       {"--dst-dtype", "mxfp8", "--mxfp8-swizzled"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.checkpoint) + " -> " + c.dst + " " + c.family);
    const std::string json_path = tmp_ / "family.json";
    std::vector<std::string> args = {"run",
                                     "--checkpoint",
                                     Checkpoint(c.checkpoint).string(),
                                     "--src",
                                     c.src,
                                     "--dst",
                                     c.dst,
                                     "--dst-family",
                                     c.family,
                                     "--world",
                                     "4",
                                     "--iters",
                                     "1",
                                     "--json",
                                     json_path};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    const CliResult r = RunCli(args);
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_EQ(TableRow(r.out).back(), "0") << r;
    EXPECT_NE(r.out.find(std::string("# engine reference (") + c.family),
              std::string::npos)
        << r;
    const Json j = Json::parse(ReadFile(json_path), nullptr, false);
    ASSERT_TRUE(j.is_object()) << r;
    EXPECT_EQ(j.value("dst_family", ""), c.family);
    EXPECT_EQ(j.value("engine_wrong", -1), 0);
    EXPECT_GT(j.value("engine_checked_tensors", 0), 20);
  }
  EXPECT_TRUE(
      IsInputError(RunCli({"run", "--dst-family", "trt"}), {"--dst-family"}));
}

// --mtp: DeepSeek-V3's multi-token prediction layer refits with the main
// model (a scaled synthetic checkpoint written with it), into Megatron and
// into vLLM's / SGLang's MTP draft names (model.layers.4.mtp_block.*,
// model.decoder.*; eh_proj whole), checked against the engine reference.
TEST_F(CliTest, MtpLayersRefitWithTheMainModel) {
  const std::string out = tmp_ / "dsv3";
  const CliResult synth = RunCli(
      {"synth", "--config",
       (SharedDir() / "model-configs" / "deepseek-v3").string(), "--out", out,
       "--scale", "64", "--layers", "4", "--dtype", "bfloat16", "--mtp"});
  ASSERT_EQ(synth.exit_code, 0) << synth;
  const SafetensorsContent st =
      ReadSafetensors(fs::path(out) / "model.safetensors");
  ASSERT_TRUE(st.Has("model.layers.4.eh_proj.weight"));
  for (const char* family : {"megatron", "vllm", "sglang"}) {
    SCOPED_TRACE(family);
    const std::string json_path = tmp_ / "mtp.json";
    const CliResult r =
        RunCli({"run", "--checkpoint", out, "--mtp", "--src", "tp=2,ep=2,etp=1",
                "--dst", "tp=2,ep=4,etp=1", "--dst-family", family, "--world",
                "4", "--iters", "1", "--json", json_path});
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_EQ(TableRow(r.out).back(), "0") << r;
    const Json j = Json::parse(ReadFile(json_path), nullptr, false);
    EXPECT_EQ(j.value("engine_wrong", -1), 0);
    if (std::string_view(family) != "megatron") {
      EXPECT_GT(j.value("engine_checked_tensors", 0), 100);
    }
  }
  const fs::path saved = tmp_ / "mtp_vllm";
  const CliResult save =
      RunCli({"run", "--checkpoint", out, "--mtp", "--src", "tp=2,ep=2,etp=1",
              "--dst", "tp=2,pp=2,ep=2,etp=1", "--dst-family", "vllm",
              "--world", "4", "--iters", "1", "--save", saved.string()});
  ASSERT_EQ(save.exit_code, 0) << save;
  const Json& last = ReadSafetensors(saved / "rank-00003.safetensors").header;
  EXPECT_EQ(last["model.layers.4.eh_proj.weight"]["shape"], Json({112, 224}));
  EXPECT_TRUE(last.contains(
      "model.layers.4.mtp_block.self_attn.fused_qkv_a_proj.weight"));
  EXPECT_TRUE(last.contains("model.layers.4.mtp_block.mlp.experts.w13_weight"));
  // Main model (part=main) and its MTP draft (part=mtp, --also-dst) in one
  // pass: both bit-exact, the main one also against the engine reference;
  // the embedding and lm_head shards (the same on each rank in both) travel
  // once and are copied: 2 tensors x 2 replicas x V x H x 2 bytes.
  const std::string pass_json = tmp_ / "pass.json";
  const CliResult pass =
      RunCli({"run", "--checkpoint", out, "--mtp", "--src", "tp=2,ep=2,etp=1",
              "--dst", "tp=2,ep=4,etp=1,part=main", "--dst-family", "vllm",
              "--also-dst", "tp=2,family=vllm,part=mtp", "--world", "4",
              "--iters", "1", "--json", pass_json});
  ASSERT_EQ(pass.exit_code, 0) << pass;
  const Json pj = Json::parse(ReadFile(pass_json), nullptr, false);
  const Json cfg = Json::parse(ReadFile(fs::path(out) / "config.json"));
  const int64_t vh =
      cfg["vocab_size"].get<int64_t>() * cfg["hidden_size"].get<int64_t>();
  EXPECT_EQ(pj.value("wrong", -1), 0);
  EXPECT_EQ(pj["also_dst"].size(), 1u);
  EXPECT_EQ(pj["also_dst"][0].value("wrong", -1), 0);
  EXPECT_EQ(pj.value("bytes_copied", int64_t{0}), 2 * 2 * vh * 2);
  EXPECT_EQ(pj.value("engine_wrong", -1), 0);
  EXPECT_GT(pj.value("engine_checked_tensors", 0), 100);
  // Without --mtp the MTP tensors are skipped, as before.
  EXPECT_EQ(RunCli({"run", "--checkpoint", out, "--src", "tp=2", "--dst",
                    "tp=1", "--world", "2", "--iters", "1"})
                .exit_code,
            0);
}

// --also-dst: a second inference pool on its own ranks (4 more: the group
// grows to 8) and a third layout on the --dst ranks, fed in one pass; every
// destination checked byte for byte; bad values are named.
TEST_F(CliTest, AlsoDstFeedsSeveralDestinationsInOnePass) {
  const std::string json_path = tmp_ / "also.json";
  const CliResult r = RunCli(
      {"run", "--checkpoint", Checkpoint("agilerl").string(), "--src",
       "tp=2,ep=2", "--dst", "tp=2,ep=2", "--dst-family", "vllm", "--world",
       "4", "--also-dst", "tp=1,ep=4,family=sglang@4+4", "--also-dst",
       "tp=2,family=vllm", "--iters", "1", "--json", json_path});
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_NE(r.out.find("# also dst tp=1,pp=1,ep=4,etp=1,family=sglang on "
                       "ranks [4, 8): 0 wrong"),
            std::string::npos)
      << r;
  const Json j = Json::parse(ReadFile(json_path), nullptr, false);
  EXPECT_EQ(j.value("ranks", 0), 8);
  EXPECT_EQ(j.value("wrong", -1), 0);
  ASSERT_EQ(j["also_dst"].size(), 2u);
  EXPECT_EQ(j["also_dst"][0].value("dst_rank_offset", -1), 4);
  EXPECT_EQ(j["also_dst"][1].value("wrong", -1), 0);
  EXPECT_GT(j.value("bytes_copied", 0), 0);  // shards both vllm layouts hold
  EXPECT_EQ(j.value("engine_wrong", -1), 0);
  EXPECT_TRUE(IsInputError(RunCli({"run", "--also-dst", "tp=2@x"}),
                           {"--also-dst 'tp=2@x': expected LAYOUT or "
                            "LAYOUT@WORLD+OFFSET"}));
  EXPECT_TRUE(IsInputError(RunCli({"run", "--also-dst", "tp=3"}),
                           {"--also-dst: layout tp=3"}));
}

// Block FP8 of an engine's qkv_proj whose q, k and v rows per rank are not
// whole blocks (16-row heads against 128-row blocks) is refused by name, as
// vLLM refuses it, instead of failing inside the planner.
TEST_F(CliTest, EngineQkvCuttingFp8BlocksIsRefusedByName) {
  const CliResult r =
      RunCli({"run", "--checkpoint", Checkpoint("agilerl").string(), "--src",
              "tp=2,ep=2", "--dst", "tp=1,ep=4", "--dst-family", "vllm",
              "--world", "4", "--dst-dtype", "fp8-block"});
  EXPECT_TRUE(IsInputError(
      r, {"tensor decoder.layers.0.self_attention.linear_qkv.weight: block "
          "FP8 in a vllm layout needs the q, k and v rows of every rank in "
          "whole 128-row blocks"}))
      << r;
}

// GLM-4.x MoE's MTP layer (its own GQA decoder layer with biased QKV and QK
// norm, vLLM glm4_moe_mtp.py / SGLang glm4_moe_nextn.py) refits with the
// main model into both engines, checked against the engine reference.
TEST_F(CliTest, GlmMtpLayerRefitsIntoEngineLayouts) {
  const std::string out = tmp_ / "glm";
  const CliResult synth = RunCli(
      {"synth", "--config",
       (SharedDir() / "model-configs" / "glm-4.6").string(), "--out", out,
       "--scale", "64", "--layers", "4", "--dtype", "bfloat16", "--mtp"});
  ASSERT_EQ(synth.exit_code, 0) << synth;
  for (const char* family : {"vllm", "sglang"}) {
    SCOPED_TRACE(family);
    const std::string json_path = tmp_ / "glm.json";
    const CliResult r =
        RunCli({"run", "--checkpoint", out, "--mtp", "--src", "tp=2,ep=2,etp=1",
                "--dst", "tp=2,ep=4,etp=1", "--dst-family", family, "--world",
                "4", "--iters", "1", "--json", json_path});
    ASSERT_EQ(r.exit_code, 0) << r;
    const Json j = Json::parse(ReadFile(json_path), nullptr, false);
    EXPECT_EQ(j.value("engine_wrong", -1), 0);
    EXPECT_EQ(j.value("engine_checked_tensors", 0), 240);
  }
}

// --save of a vLLM destination writes the engine's tensors: qkv_proj,
// stacked w13_weight [E_local, 2 * I / etp, H], padded embedding.
TEST_F(CliTest, SaveWritesEngineTensors) {
  const fs::path dir = tmp_ / "vllm";
  std::vector<std::string> args =
      RunArgs(Checkpoint("agilerl"), {"tp=2,ep=2", "tp=2,ep=2", 4, 0, 0});
  args.insert(args.end(), {"--dst-family", "vllm", "--save", dir.string()});
  const CliResult r = RunCli(args);
  ASSERT_EQ(r.exit_code, 0) << r;
  const SafetensorsContent st = ReadSafetensors(dir / "rank-00001.safetensors");
  const Json& h = st.header;
  ASSERT_TRUE(h.contains("model.layers.0.self_attn.qkv_proj.weight")) << h;
  ASSERT_TRUE(h.contains("model.layers.0.mlp.experts.w13_weight")) << h;
  EXPECT_FALSE(h.contains("model.layers.0.mlp.experts.w13_weight0"));
  EXPECT_EQ(h["model.layers.0.mlp.experts.w13_weight"]["shape"],
            Json({2, 32, 64}));
  EXPECT_EQ(h["model.embed_tokens.weight"]["shape"], Json({32, 64}));
}

// --fanout-gpus-per-node: two destination replicas on the second node of
// 4 GPUs get each byte over the network once and forward it; bit-exact,
// and the report says how many bytes were forwarded.
TEST_F(CliTest, NodeFanoutRunIsBitExactAndReportsForwardedBytes) {
  const std::string json_path = tmp_ / "fanout.json";
  std::vector<std::string> args =
      RunArgs(Checkpoint("agilerl"), {"tp=2,ep=2", "tp=1,ep=2", 0, 4, 4});
  args.insert(args.end(), {"--fanout-gpus-per-node", "4", "--json", json_path});
  const CliResult r = RunCli(args);
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_NE(r.out.find("# node fan-out (4 GPUs a node)"), std::string::npos)
      << r;
  const Json j = Json::parse(ReadFile(json_path), nullptr, false);
  ASSERT_TRUE(j.is_object()) << r;
  EXPECT_EQ(j.value("wrong", -1), 0);
  EXPECT_EQ(j.value("fanout_gpus_per_node", -1), 4);
  EXPECT_GT(j.value("bytes_forwarded", uint64_t{0}), 0u);
  EXPECT_TRUE(IsInputError(RunCli({"run", "--fanout-gpus-per-node", "-1"}),
                           {"fanout"}));
}

TEST_F(CliTest, ShapeMismatchNamesTheTensor) {
  const std::string ckpt = Synth("a", DenseConfig("LlamaForCausalLM", 64));
  const std::string other = Synth("b", DenseConfig("LlamaForCausalLM", 32));
  fs::copy_file(other + "/model.safetensors", ckpt + "/model.safetensors",
                fs::copy_options::overwrite_existing);
  const CliResult r = RunCli(RunArgs(ckpt, {"tp=1", "tp=2", 2, 0, 0}));
  EXPECT_TRUE(IsInputError(r, {"model.embed_tokens.weight", "shape", ckpt}));
}

TEST_F(CliTest, MissingLayerTensorIsNamed) {
  const std::string ckpt = Synth("a", DenseConfig("LlamaForCausalLM", 64));
  const std::string other =
      Synth("b", DenseConfig("LlamaForCausalLM", 64), {"--layers", "2"});
  fs::copy_file(other + "/model.safetensors", ckpt + "/model.safetensors",
                fs::copy_options::overwrite_existing);
  const CliResult r = RunCli(RunArgs(ckpt, {"tp=1", "tp=2", 2, 0, 0}));
  EXPECT_TRUE(IsInputError(r, {"missing", "model.layers.2."}));
}

TEST_F(CliTest, MissingBiasIsNamed) {
  // A Qwen2 config (q/k/v biases) over a Llama checkpoint (none).
  const std::string ckpt = Synth("a", DenseConfig("Qwen2ForCausalLM", 64));
  const std::string other = Synth("b", DenseConfig("LlamaForCausalLM", 64));
  fs::copy_file(other + "/model.safetensors", ckpt + "/model.safetensors",
                fs::copy_options::overwrite_existing);
  const CliResult r = RunCli(RunArgs(ckpt, {"tp=1", "tp=2", 2, 0, 0}));
  EXPECT_TRUE(
      IsInputError(r, {"missing", "model.layers.0.self_attn.q_proj.bias"}));
}

TEST_F(CliTest, UnexpectedTensorIsNamed) {
  // A Llama config over a Qwen2 checkpoint: the biases are not in the model.
  const std::string ckpt = Synth("a", DenseConfig("LlamaForCausalLM", 64));
  const std::string other = Synth("b", DenseConfig("Qwen2ForCausalLM", 64));
  fs::copy_file(other + "/model.safetensors", ckpt + "/model.safetensors",
                fs::copy_options::overwrite_existing);
  const CliResult r = RunCli(RunArgs(ckpt, {"tp=1", "tp=2", 2, 0, 0}));
  EXPECT_TRUE(IsInputError(r, {"model.layers.", "_proj.bias"}));
}

TEST_F(CliTest, TruncatedSafetensorsNamesTheFile) {
  const std::string full = ReadFile(BundledCheckpoint() / "model.safetensors");
  ASSERT_GT(full.size(), 1000u);
  const std::string ckpt = tmp_ / "truncated";
  fs::create_directories(ckpt);
  fs::copy_file(BundledCheckpoint() / "config.json", ckpt + "/config.json");
  // Half the file; inside the header; shorter than the length prefix.
  for (size_t size : {full.size() / 2, size_t{1000}, size_t{4}}) {
    SCOPED_TRACE("truncated to " + std::to_string(size) + " bytes");
    WriteFile(ckpt + "/model.safetensors", full.substr(0, size));
    const CliResult r = RunCli(RunArgs(ckpt, {"tp=2,ep=2", "tp=1", 4, 0, 0}));
    EXPECT_TRUE(IsInputError(r, {ckpt + "/model.safetensors"}));
  }
}

TEST_F(CliTest, UnknownArchitectureIsNamed) {
  const std::string dir = tmp_ / "foo";
  fs::create_directories(dir);
  std::string config = DenseConfig("FooForCausalLM", 64);
  WriteFile(dir + "/config.json", config);
  EXPECT_TRUE(IsInputError(RunCli(RunArgs(dir, {"tp=1", "tp=1", 1, 0, 0})),
                           {"FooForCausalLM"}));
  EXPECT_TRUE(IsInputError(RunCli({"inspect", dir}), {"FooForCausalLM"}));
  EXPECT_TRUE(
      IsInputError(RunCli({"synth", "--config", dir, "--out", tmp_ / "out"}),
                   {"FooForCausalLM"}));
}

TEST_F(CliTest, FusedExpertFamiliesAreRefusedByName) {
  if (!HaveSharedData()) GTEST_SKIP() << kNoSharedData;
  const std::pair<const char*, const char*> kFused[] = {
      {"neural-api-tiny/gpt_oss", "GptOssForCausalLM"},
      {"neural-api-tiny/gpt_oss_mxfp4", "GptOssForCausalLM"},
      {"neural-api-tiny/granitemoe", "GraniteMoeForCausalLM"},
      {"neural-api-tiny/llama4", "Llama4ForCausalLM"},
      {"neural-api-tiny/qwen3_5_moe", "Qwen3_5MoeForConditionalGeneration"},
  };
  for (const auto& [dir, architecture] : kFused) {
    SCOPED_TRACE(dir);
    const CliResult r =
        RunCli(RunArgs(Checkpoint(dir), {"tp=1", "tp=1", 1, 0, 0}));
    EXPECT_TRUE(IsInputError(r, {architecture, "fused"}));
  }
}

TEST_F(CliTest, MissingCheckpointIsNamed) {
  const std::string dir = tmp_ / "nothing-here";
  EXPECT_TRUE(
      IsInputError(RunCli(RunArgs(dir, {"tp=1", "tp=1", 1, 0, 0})), {dir}));
  EXPECT_TRUE(IsInputError(RunCli({"inspect", dir}), {dir}));
}

TEST_F(CliTest, CheckpointWithoutSafetensorsIsRefused) {
  const std::string dir = tmp_ / "config-only";
  fs::create_directories(dir);
  fs::copy_file(BundledCheckpoint() / "config.json", dir + "/config.json");
  EXPECT_TRUE(
      IsInputError(RunCli(RunArgs(dir, {"tp=1", "tp=1", 1, 0, 0})), {dir}));
}

// A layout error on the bundled checkpoint (4 heads, 4 KV heads, 2 layers, 4
// experts of width 32).
struct LayoutErrorCase {
  const char* name;
  RefitCase refit;
  std::array<const char*, 3> needles;  // nullptr: none
};

std::ostream& operator<<(std::ostream& os, const LayoutErrorCase& c) {
  return os << c.name;
}

constexpr LayoutErrorCase kLayoutErrorCases[] = {
    {"TpDoesNotDivideHeads",
     {"tp=3", "tp=1", 3, 0, 0},
     {"--src", "tp=3", "num_attention_heads"}},
    {"EpDoesNotDivideExperts",
     {"tp=1", "ep=3", 3, 0, 0},
     {"--dst", "ep=3", "num_experts"}},
    {"PpDoesNotDivideLayers",
     {"tp=1", "pp=3", 3, 0, 0},
     {"--dst", "pp=3", "num_layers"}},
    {"PpFirstTooLarge",
     {"tp=1", "pp=2,pp_first=3", 2, 0, 0},
     {"--dst", "pp_first=3", "num_layers"}},
    {"PpMiddleStagesUneven",
     {"tp=1", "pp=3,pp_first=1", 3, 0, 0},
     {"--dst", "pp=3", "num_layers"}},
    {"PpFirstWithoutPp",
     {"pp_first=1", "tp=1", 1, 0, 0},
     {"--src", "pp_first", nullptr}},
    {"EtpDoesNotDivideExpertWidth",
     {"tp=1", "etp=3", 3, 0, 0},
     {"--dst", "etp=3", "linear_fc1"}},
    {"WorldNotDivisibleByTp",
     {"tp=2", "tp=1", 3, 0, 0},
     {"--src", "world size 3", "tp"}},
    {"WorldNotDivisibleByExpertGrid",
     {"tp=1", "ep=4", 2, 0, 0},
     {"--dst", "world size 2", "ep"}},
    {"NonCollocatedWorldTooSmall",
     {"tp=2,ep=2", "tp=1", 0, 2, 4},
     {"--src", "world size 2", nullptr}},
    {"MalformedValue", {"tp=x", "tp=1", 4, 0, 0}, {"--src", "tp", "'x'"}},
    {"NegativeValue", {"tp=1", "tp=-2", 4, 0, 0}, {"--dst", "tp", "-2"}},
    {"ZeroCp", {"cp=0", "tp=1", 4, 0, 0}, {"--src", "cp", nullptr}},
    {"UnknownKey", {"tp=1", "dp=2", 4, 0, 0}, {"--dst", "dp", nullptr}},
    {"NotKeyValue", {"tp=1", "tp", 4, 0, 0}, {"--dst", "tp", nullptr}},
    {"TrailingComma", {"tp=2,", "tp=1", 4, 0, 0}, {"--src", nullptr, nullptr}},
    {"EmptyLayout", {"", "tp=1", 4, 0, 0}, {"--src", "empty", nullptr}},
};

class LayoutErrorTest : public ::testing::TestWithParam<LayoutErrorCase> {};

TEST_P(LayoutErrorTest, FailsNamingTheField) {
  const LayoutErrorCase& c = GetParam();
  std::vector<std::string> needles;
  for (const char* n : c.needles) {
    if (n != nullptr) needles.push_back(n);
  }
  EXPECT_TRUE(
      IsInputError(RunCli(RunArgs(BundledCheckpoint(), c.refit)), needles));
}

INSTANTIATE_TEST_SUITE_P(
    AgileRl, LayoutErrorTest, ::testing::ValuesIn(kLayoutErrorCases),
    [](const ::testing::TestParamInfo<LayoutErrorCase>& info) {
      return std::string(info.param.name);
    });

TEST_F(CliTest, ExpertParallelismOnDenseModelIsRefused) {
  if (!HaveSharedData()) GTEST_SKIP() << kNoSharedData;
  const CliResult r = RunCli(RunArgs(Checkpoint("neural-api-tiny/smollm2"),
                                     {"tp=1", "ep=2", 2, 0, 0}));
  EXPECT_TRUE(IsInputError(r, {"--dst", "ep=2", "experts"}));
}

TEST_F(CliTest, NarrowExpertsNeedEtpOne) {
  if (!HaveSharedData()) GTEST_SKIP() << kNoSharedData;
  // Expert width 5: tp=2 without etp=1 splits the experts by 2.
  const CliResult r = RunCli(RunArgs(Checkpoint("neural-api-tiny/qwen3_moe"),
                                     {"tp=1", "tp=2", 2, 0, 0}));
  EXPECT_TRUE(IsInputError(r, {"--dst", "etp=2"}));
}

TEST_F(CliTest, TopologyOptionsMustAgree) {
  const std::string ckpt = BundledCheckpoint().string();
  const std::vector<std::string> base = {"run", "--checkpoint", ckpt, "--iters",
                                         "1"};
  const std::vector<std::vector<std::string>> bad = {
      {"--src-world", "4"},
      {"--dst-world", "4"},
      {"--world", "4", "--src-world", "4", "--dst-world", "4"},
  };
  for (const std::vector<std::string>& extra : bad) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    const CliResult r = RunCli(args);
    EXPECT_TRUE(IsInputError(r, {"--src-world", "--dst-world"}));
  }
  for (const char* world : {"0", "-4"}) {
    std::vector<std::string> args = base;
    args.insert(args.end(), {"--src-world", world, "--dst-world", "4"});
    EXPECT_TRUE(IsInputError(RunCli(args), {"--src-world", world}));
  }
}

// --world 0 and negative worlds are refused, not taken as the default.
TEST_F(CliTest, NonPositiveWorldIsRefused) {
  for (const char* world : {"0", "-4"}) {
    SCOPED_TRACE(std::string("--world ") + world);
    const CliResult r =
        RunCli({"run", "--checkpoint", BundledCheckpoint().string(), "--world",
                world, "--iters", "1"});
    EXPECT_TRUE(IsInputError(r, {"world"}));
  }
}

TEST_F(CliTest, ItersBelowOneIsRefused) {
  const CliResult r = RunCli({"run", "--iters", "0"});
  EXPECT_TRUE(IsInputError(r, {"--iters"}));
}

// Option values CLI11 cannot parse get the same one "refit: ..." line.
TEST_F(CliTest, UnparsableOptionValueIsOneLine) {
  const CliResult r = RunCli({"run", "--world", "four"});
  EXPECT_TRUE(IsInputError(r, {"--world"}));
}

// synth --scale divides the widths (FFN widths stay multiples of
// --scale-multiple) and the scaled checkpoint refits bit-exact.
TEST_F(CliTest, SynthScaleShrinksWidths) {
  const std::string out = tmp_ / "scaled";
  const CliResult synth =
      RunCli({"synth", "--config", BundledCheckpoint().string(), "--out", out,
              "--scale", "4", "--scale-multiple", "2"});
  ASSERT_EQ(synth.exit_code, 0) << synth;
  const Json config = Json::parse(ReadFile(fs::path(out) / "config.json"));
  EXPECT_EQ(config["hidden_size"], 16);           // 64 / 4
  EXPECT_EQ(config["moe_intermediate_size"], 8);  // 32 / 4, a multiple of 2
  EXPECT_EQ(config["num_hidden_layers"], 2);
  EXPECT_EQ(config["num_local_experts"], 4);
  const CliResult run =
      RunCli({"run", "--checkpoint", out, "--src", "tp=2,ep=2", "--dst",
              "tp=1,ep=4", "--iters", "1"});
  EXPECT_EQ(run.exit_code, 0) << run;
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunCli({}).exit_code, 2);
  EXPECT_EQ(RunCli({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(RunCli({"run", "--no-such-option"}).exit_code, 2);
  EXPECT_EQ(RunCli({"synth", "--out", tmp_ / "x"}).exit_code, 2);
  EXPECT_EQ(RunCli({"inspect"}).exit_code, 2);
  EXPECT_EQ(RunCli({"--help"}).exit_code, 0);
}

TEST_F(CliTest, JsonIsNotWrittenOnFailure) {
  const std::string json = tmp_ / "report.json";
  const std::string truncated = tmp_ / "truncated";
  fs::create_directories(truncated);
  fs::copy_file(BundledCheckpoint() / "config.json",
                truncated + "/config.json");
  WriteFile(truncated + "/model.safetensors",
            ReadFile(BundledCheckpoint() / "model.safetensors").substr(0, 500));
  const std::string not_a_dir = tmp_ / "file";
  WriteFile(not_a_dir, "x");
  const std::string ckpt = BundledCheckpoint().string();
  const std::vector<std::vector<std::string>> failing = {
      {"run", "--checkpoint", ckpt, "--dst", "tp=3", "--world", "3"},
      {"run", "--checkpoint", truncated},
      {"run", "--checkpoint", ckpt, "--iters", "0"},
      // Fails after the refit: --save cannot create its folder.
      {"run", "--checkpoint", ckpt, "--iters", "1", "--save", not_a_dir},
  };
  for (std::vector<std::string> args : failing) {
    args.insert(args.end(), {"--json", json});
    const CliResult r = RunCli(args);
    EXPECT_TRUE(IsInputError(r, {}));
    EXPECT_FALSE(fs::exists(json)) << r;
    EXPECT_FALSE(fs::exists(json + ".tmp")) << r;
  }
}

TEST_F(CliTest, JsonThatCannotBeWrittenFailsCleanly) {
  // The report path is a folder: the rename of FILE.tmp onto it fails.
  const std::string json = tmp_ / "report.json";
  fs::create_directories(json);
  const CliResult r =
      RunCli({"run", "--checkpoint", BundledCheckpoint().string(), "--iters",
              "1", "--json", json});
  EXPECT_TRUE(IsInputError(r, {json}));
  EXPECT_TRUE(fs::is_directory(json));
  EXPECT_FALSE(fs::exists(json + ".tmp"));
}

// ---------------------------------------------------------------------------
// 4. `refit run` with no options: the bundled checkpoint, bit-exact.

TEST_F(CliTest, RunWithNoOptions) {
  const CliResult r = RunCli({"run"});
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("#wrong"));
  EXPECT_THAT(r.out, HasSubstr(BundledCheckpoint().string()));
  const std::vector<std::string> row = TableRow(r.out);
  ASSERT_FALSE(row.empty()) << r;
  EXPECT_EQ(row.back(), "0") << r;
  EXPECT_EQ(r.err, "");
}

// --verify checksum: bit-exact, said in the table and the JSON; under
// mpirun too (the MPI job passes it on: RunMpiRun).
TEST_F(CliTest, RunVerifyChecksum) {
  const std::string json = tmp_ / "verify.json";
  const CliResult r =
      RunCli({"run", "--iters", "2", "--verify", "checksum", "--json", json});
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("# verify checksum: each of the 6 messages"));
  EXPECT_EQ(TableRow(r.out).back(), "0") << r;
  const Json report = Json::parse(ReadFile(json), nullptr, false);
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report.value("verify", ""), "checksum");
  EXPECT_TRUE(IsInputError(RunCli({"run", "--verify", "crc"}), {"--verify"}));
  // The default, auto, checksums host tensors; none turns it off.
  EXPECT_THAT(RunCli({"run", "--iters", "1"}).out,
              HasSubstr("# verify checksum: each of the 6 messages"));
  const CliResult off = RunCli({"run", "--iters", "1", "--verify", "none"});
  ASSERT_EQ(off.exit_code, 0) << off;
  EXPECT_THAT(off.out, Not(HasSubstr("# verify checksum")));
}

// --atomic: bit-exact (padding rows included: the last check expects them
// as the baseline left them), the shadow's bytes in the table and the JSON.
TEST_F(CliTest, RunAtomic) {
  const std::string json = tmp_ / "atomic.json";
  const CliResult r =
      RunCli({"run", "--iters", "2", "--atomic", "--baseline", "--json", json});
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("# atomic: every refit wrote a shadow copy ("));
  EXPECT_EQ(TableRow(r.out).back(), "0") << r;
  const Json report = Json::parse(ReadFile(json), nullptr, false);
  ASSERT_TRUE(report.is_object());
  EXPECT_TRUE(report.value("atomic", false));
  EXPECT_GT(report.value("shadow_bytes", uint64_t{0}), uint64_t{0});
}

TEST_F(CliTest, BaselineAndPlanDump) {
  const std::string json = tmp_ / "report.json";
  const std::string plan = tmp_ / "plan.json";
  const CliResult r = RunCli({"run", "--iters", "1", "--baseline", "--json",
                              json, "--dump-plan", plan});
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("baseline memcpy"));
  const Json report = Json::parse(ReadFile(json), nullptr, false);
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report.value("wrong", -1), 0);
  EXPECT_TRUE(report.contains("memcpy_ms_median"));
  EXPECT_TRUE(report.contains("refit_over_memcpy"));
  const Json dump = Json::parse(ReadFile(plan), nullptr, false);
  ASSERT_TRUE(dump.is_object());
  ASSERT_TRUE(dump["shards"].is_array());
  ASSERT_TRUE(dump["pieces"].is_array());
  EXPECT_FALSE(dump["pieces"].empty());
  int64_t dst_shards = 0;
  for (const Json& shard : dump["shards"]) dst_shards += shard[0] == "dst";
  EXPECT_EQ(dst_shards, report.value("tensors", int64_t{-1}));
}

// ---------------------------------------------------------------------------
// 5. `refit run --save`: one safetensors file per destination rank.

TEST_F(CliTest, SaveWritesLocalRankFiles) {
  const fs::path ckpt_dir = BundledCheckpoint();
  const std::string save = tmp_ / "saved";
  const std::string json = tmp_ / "report.json";
  // dst tp=1,pp=2,ep=2 on 4 ranks: ranks 0, 1 are stage 0 (layer 0), ranks
  // 2, 3 stage 1 (layer 1); EP rank = rank % 2 holds experts 2ep, 2ep+1.
  const CliResult r =
      RunCli({"run", "--checkpoint", ckpt_dir.string(), "--src", "tp=2,ep=2",
              "--dst", "tp=1,pp=2,ep=2", "--world", "4", "--iters", "1",
              "--save", save, "--json", json});
  ASSERT_EQ(r.exit_code, 0) << r;
  std::set<std::string> files;
  for (const auto& entry : fs::directory_iterator(save)) {
    files.insert(entry.path().filename().string());
  }
  EXPECT_EQ(files, (std::set<std::string>{
                       "rank-00000.safetensors", "rank-00001.safetensors",
                       "rank-00002.safetensors", "rank-00003.safetensors"}));
  // The table, the checksum line and 4 "# saved" lines.
  EXPECT_EQ(Lines(r.out).size(), 4u + 1u + 4u) << r;
  for (int rank = 0; rank < 4; ++rank) {
    EXPECT_THAT(r.out, HasSubstr("# saved " + save + "/rank-0000" +
                                 std::to_string(rank) + ".safetensors"));
  }

  const SafetensorsContent ckpt =
      ReadSafetensors(ckpt_dir / "model.safetensors");
  ASSERT_TRUE(ckpt.header.is_object());
  constexpr int64_t kVocab = 7, kHidden = 64, kRowBytes = kHidden * 4;
  for (int rank = 0; rank < 4; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    const int stage = rank / 2, ep = rank % 2, layer = stage;
    const SafetensorsContent st = ReadSafetensors(
        fs::path(save) / ("rank-0000" + std::to_string(rank) + ".safetensors"));
    ASSERT_TRUE(st.header.is_object());
    const Json& meta = st.header["__metadata__"];
    ASSERT_TRUE(meta.is_object());
    EXPECT_EQ(meta.value("layout", ""), "tp=1,pp=2,ep=2,etp=1");
    EXPECT_EQ(meta.value("rank", ""), std::to_string(rank));
    EXPECT_EQ(meta.value("world_size", ""), "4");
    EXPECT_EQ(meta.value("layer_offset", ""), std::to_string(stage));

    // Local layer and expert indices only.
    const std::set<std::string> names = st.Names();
    for (const std::string& name : names) {
      EXPECT_FALSE(name.starts_with("decoder.layers.") &&
                   !name.starts_with("decoder.layers.0."))
          << name;
      EXPECT_FALSE(name.ends_with("weight2") || name.ends_with("weight3"))
          << name;
      EXPECT_EQ(st.DType(name), "F32") << name;
    }
    const std::string l0 = "decoder.layers.0.";
    const std::string hf = "model.layers." + std::to_string(layer) + ".";
    for (int local = 0; local < 2; ++local) {
      const std::string id = std::to_string(local);
      const std::string expert =
          hf + "mlp.experts." + std::to_string(2 * ep + local) + ".";
      const std::string fc1 = l0 + "mlp.experts.linear_fc1.weight" + id;
      const std::string fc2 = l0 + "mlp.experts.linear_fc2.weight" + id;
      ASSERT_TRUE(st.Has(fc1)) << fc1;
      ASSERT_TRUE(st.Has(fc2)) << fc2;
      EXPECT_EQ(st.Shape(fc1), (std::vector<int64_t>{64, 64}));
      EXPECT_EQ(st.Shape(fc2), (std::vector<int64_t>{64, 32}));
      const std::string gate_up =
          std::string(ckpt.Data(expert + "gate_proj.weight")) +
          std::string(ckpt.Data(expert + "up_proj.weight"));
      EXPECT_TRUE(st.Data(fc1) == gate_up) << fc1;
      EXPECT_TRUE(st.Data(fc2) == ckpt.Data(expert + "down_proj.weight"))
          << fc2;
    }
    EXPECT_TRUE(st.Data(l0 + "mlp.router.weight") ==
                ckpt.Data(hf + "mlp.gate.weight"));
    // QKV interleaved per query group: 4 groups of [q head; k head; v head],
    // 16 rows each.
    const std::string_view qkv =
        st.Data(l0 + "self_attention.linear_qkv.weight");
    ASSERT_EQ(qkv.size(), size_t{192 * kRowBytes});
    for (int g = 0; g < 4; ++g) {
      const char* parts[] = {"q_proj", "k_proj", "v_proj"};
      for (int p = 0; p < 3; ++p) {
        const std::string_view want =
            ckpt.Data(hf + "self_attn." + parts[p] + ".weight")
                .substr(g * 16 * kRowBytes, 16 * kRowBytes);
        EXPECT_TRUE(qkv.substr((3 * g + p) * 16 * kRowBytes, 16 * kRowBytes) ==
                    want)
            << "group " << g << " " << parts[p];
      }
    }

    const std::string embed = "embedding.word_embeddings.weight";
    if (stage == 0) {
      ASSERT_TRUE(st.Has(embed));
      EXPECT_EQ(st.Shape(embed), (std::vector<int64_t>{128, kHidden}));
      const std::string_view data = st.Data(embed);
      ASSERT_EQ(data.size(), size_t{128 * kRowBytes});
      EXPECT_TRUE(data.substr(0, kVocab * kRowBytes) ==
                  ckpt.Data("model.embed_tokens.weight"));
      EXPECT_EQ(data.substr(kVocab * kRowBytes),
                std::string((128 - kVocab) * kRowBytes, '\0'));
      EXPECT_FALSE(st.Has("output_layer.weight"));
      EXPECT_FALSE(st.Has("decoder.final_layernorm.weight"));
    } else {
      EXPECT_FALSE(st.Has(embed));
      ASSERT_TRUE(st.Has("output_layer.weight"));
      EXPECT_EQ(st.Shape("output_layer.weight"),
                (std::vector<int64_t>{128, kHidden}));
      const std::string_view data = st.Data("output_layer.weight");
      EXPECT_TRUE(data.substr(0, kVocab * kRowBytes) ==
                  ckpt.Data("lm_head.weight"));
      EXPECT_EQ(data.substr(kVocab * kRowBytes),
                std::string((128 - kVocab) * kRowBytes, '\0'));
      EXPECT_TRUE(st.Data("decoder.final_layernorm.weight") ==
                  ckpt.Data("model.norm.weight"));
    }
  }
}

// The files of a --save folder, by name.
std::set<std::string> FileNames(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

// Files are named by five-digit global rank; the metadata gives the rank
// within the destination layout.
TEST_F(CliTest, SaveNonCollocatedNamesFilesByGlobalRank) {
  const std::string save = tmp_ / "saved";
  const CliResult r =
      RunCli({"run", "--checkpoint", BundledCheckpoint().string(), "--src",
              "tp=2,etp=1,ep=2", "--dst", "tp=1,pp=2,ep=2", "--src-world", "2",
              "--dst-world", "4", "--iters", "1", "--save", save});
  ASSERT_EQ(r.exit_code, 0) << r;
  for (const std::string& name : FileNames(save)) {
    const SafetensorsContent st = ReadSafetensors(fs::path(save) / name);
    ASSERT_TRUE(st.header.is_object()) << name;
    const Json& meta = st.header["__metadata__"];
    EXPECT_EQ(meta.value("world_size", ""), "4") << name;
    const int rank = std::stoi(meta.value("rank", "-1"));
    EXPECT_EQ(name, "rank-0000" + std::to_string(rank + 2) + ".safetensors");
  }
  EXPECT_EQ(FileNames(save),
            (std::set<std::string>{
                "rank-00002.safetensors", "rank-00003.safetensors",
                "rank-00004.safetensors", "rank-00005.safetensors"}));
}

// A BF16 checkpoint under a config that asks for float32 does not match its
// config: only the fp32 router tensors widen BF16 (exactly).
TEST_F(CliTest, Bf16CheckpointUnderF32ConfigIsRefused) {
  std::string config = DenseConfig("LlamaForCausalLM", 64);
  const std::string ckpt = Synth("a", config);
  config.replace(config.find("bfloat16"), 8, "float32");
  ASSERT_NO_FATAL_FAILURE(WriteFile(ckpt + "/config.json", config));
  const CliResult r = RunCli(RunArgs(ckpt, {"tp=1", "tp=2,pp=2", 4, 0, 0}));
  EXPECT_TRUE(IsInputError(r, {"model.embed_tokens.weight", "BF16", "F32"}));
}

TEST_F(CliTest, MtpLayerAndTiedHeadTensorsAreNotRefit) {
  // GLM-4.x checkpoints hold an MTP layer after num_hidden_layers.
  const SynthCase* glm = nullptr;
  for (const SynthCase& c : kSynthCases) {
    if (std::string_view(c.name) == "Glm4Moe") glm = &c;
  }
  ASSERT_NE(glm, nullptr);
  const std::string mtp = Synth("mtp", glm->config, {"--layers", "5"});
  ASSERT_NO_FATAL_FAILURE(WriteFile(mtp + "/config.json", glm->config));
  ExpectBitExactRefit(mtp, {"tp=1,ep=2", "tp=2,pp=2,ep=2,etp=1", 4, 0, 0},
                      tmp_);

  // An untied checkpoint (with lm_head.weight) under a tied config.
  const std::string config = DenseConfig("LlamaForCausalLM", 64);
  const std::string tied = Synth("tied", config);
  ASSERT_NO_FATAL_FAILURE(
      WriteFile(tied + "/config.json",
                "{\"tie_word_embeddings\": true, " + config.substr(1)));
  ExpectBitExactRefit(tied, {"tp=2", "tp=1,pp=2", 4, 0, 0}, tmp_);
}

// Rows [begin, begin + n) of a row-major tensor of `row_bytes` per row.
std::string Rows(std::string_view t, int64_t row_bytes, int64_t begin,
                 int64_t n) {
  if (n <= 0) return "";
  return std::string(t.substr(begin * row_bytes, n * row_bytes));
}

// Columns [begin, begin + n) of every row of a [rows, cols] tensor.
std::string Columns(std::string_view t, int64_t rows, int64_t cols,
                    int64_t esize, int64_t begin, int64_t n) {
  std::string out;
  for (int64_t r = 0; r < rows; ++r) {
    out += t.substr((r * cols + begin) * esize, n * esize);
  }
  return out;
}

// The shard that TP coordinate `t` of `tp` must hold of the Megatron tensor
// `name` of a pp=1, ep=1 layout, built from the HF tensors `hf` by the rules
// of reference/layouts.md: QKV interleaved per query group then split evenly
// by rows (§1.3), fc1 as [gate_t; up_t] (§1.4), row-parallel tensors split
// by columns, vocabulary padded to 128*tp rows with zeros (§1.5), norms and
// routers whole. Empty when the name is unknown.
std::string MegatronShard(const std::string& name, const Json& tensors,
                          const SafetensorsContent& hf, int t, int tp,
                          int groups) {
  auto shape = [&](const std::string& n) {
    return tensors.at(n).at("shape").get<std::vector<int64_t>>();
  };
  auto esize = [&](const std::string& n) {
    return DTypeBytes(tensors.at(n).at("dtype").get<std::string>());
  };
  auto row_bytes = [&](const std::string& n) {
    return shape(n).size() < 2 ? esize(n) : shape(n)[1] * esize(n);
  };
  auto whole = [&](const std::string& n) { return std::string(hf.Data(n)); };
  auto columns = [&](const std::string& n) {
    const std::vector<int64_t> s = shape(n);
    return Columns(hf.Data(n), s[0], s[1], esize(n), t * s[1] / tp, s[1] / tp);
  };
  auto gated = [&](const std::string& gate, const std::string& up) {
    const int64_t rows = shape(gate)[0] / tp;
    return Rows(hf.Data(gate), row_bytes(gate), t * rows, rows) +
           Rows(hf.Data(up), row_bytes(up), t * rows, rows);
  };
  auto vocab = [&](const std::string& n) {
    const int64_t rows = shape(n)[0], rb = row_bytes(n);
    const int64_t per = (rows + 128 * tp - 1) / (128 * tp) * 128;
    const int64_t real = std::clamp<int64_t>(rows - t * per, 0, per);
    return Rows(hf.Data(n), rb, t * per, real) +
           std::string((per - real) * rb, '\0');
  };
  if (name == "embedding.word_embeddings.weight") {
    return vocab("model.embed_tokens.weight");
  }
  if (name == "output_layer.weight") return vocab("lm_head.weight");
  if (name == "decoder.final_layernorm.weight") {
    return whole("model.norm.weight");
  }
  const std::string prefix = "decoder.layers.";
  if (!name.starts_with(prefix)) return "";
  const size_t dot = name.find('.', prefix.size());
  const std::string layer = name.substr(prefix.size(), dot - prefix.size());
  const std::string rest = name.substr(dot + 1);
  const std::string l = "model.layers." + layer + ".";
  if (rest == "self_attention.linear_qkv.weight") {
    const std::string q = l + "self_attn.q_proj.weight",
                      k = l + "self_attn.k_proj.weight",
                      v = l + "self_attn.v_proj.weight";
    const int64_t rb = row_bytes(q);
    const int64_t qg = shape(q)[0] / groups, kg = shape(k)[0] / groups;
    std::string global;
    for (int g = 0; g < groups; ++g) {
      global += Rows(hf.Data(q), rb, g * qg, qg) +
                Rows(hf.Data(k), rb, g * kg, kg) +
                Rows(hf.Data(v), rb, g * kg, kg);
    }
    const int64_t rows = groups * (qg + 2 * kg) / tp;
    return Rows(global, rb, t * rows, rows);
  }
  if (rest == "self_attention.linear_proj.weight") {
    return columns(l + "self_attn.o_proj.weight");
  }
  if (rest == "mlp.linear_fc1.weight") {
    return gated(l + "mlp.gate_proj.weight", l + "mlp.up_proj.weight");
  }
  if (rest == "mlp.linear_fc2.weight") {
    return columns(l + "mlp.down_proj.weight");
  }
  const std::string fc1 = "mlp.experts.linear_fc1.weight";
  const std::string fc2 = "mlp.experts.linear_fc2.weight";
  if (rest.starts_with(fc1)) {
    const std::string e = l + "mlp.experts." + rest.substr(fc1.size()) + ".";
    return gated(e + "gate_proj.weight", e + "up_proj.weight");
  }
  if (rest.starts_with(fc2)) {
    return columns(l + "mlp.experts." + rest.substr(fc2.size()) +
                   ".down_proj.weight");
  }
  const std::pair<const char*, const char*> kWhole[] = {
      {"self_attention.linear_qkv.layer_norm_weight", "input_layernorm.weight"},
      {"mlp.linear_fc1.layer_norm_weight", "post_attention_layernorm.weight"},
      {"pre_mlp_layernorm.weight", "post_attention_layernorm.weight"},
      {"self_attention.q_layernorm.weight", "self_attn.q_norm.weight"},
      {"self_attention.k_layernorm.weight", "self_attn.k_norm.weight"},
      {"mlp.router.weight", "mlp.gate.weight"},
  };
  for (const auto& [megatron, hf_name] : kWhole) {
    if (rest == megatron) return whole(l + hf_name);
  }
  return "";
}

TEST_F(CliTest, SavedTensorParallelShardsFollowMegatronLayout) {
  struct Case {
    std::string checkpoint;
    const char* src;
    const char* dst;
    int tp;
    int groups;  // KV heads
  };
  // agilerl: tp=2 <= 4 KV heads (whole groups per rank), experts split by
  // etp=2. Llama: tp=4 > 2 KV heads (the row split cuts through groups),
  // vocabulary 300 padded to 512.
  const Case cases[] = {
      {BundledCheckpoint().string(), "tp=1,ep=2", "tp=2", 2, 4},
      {Synth("llama", DenseConfig("LlamaForCausalLM", 64)), "pp=2", "tp=4", 4,
       2},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.checkpoint + " -> " + c.dst);
    const std::string save = tmp_ / ("saved-tp" + std::to_string(c.tp));
    std::vector<std::string> args =
        RunArgs(c.checkpoint, {c.src, c.dst, c.tp, 0, 0});
    args.insert(args.end(), {"--save", save});
    const CliResult r = RunCli(args);
    ASSERT_EQ(r.exit_code, 0) << r;
    const SafetensorsContent hf =
        ReadSafetensors(fs::path(c.checkpoint) / "model.safetensors");
    const Json tensors = CheckpointTensors(c.checkpoint);
    for (int rank = 0; rank < c.tp; ++rank) {
      const SafetensorsContent saved =
          ReadSafetensors(fs::path(save) / ("rank-0000" + std::to_string(rank) +
                                            ".safetensors"));
      ASSERT_TRUE(saved.header.is_object());
      ASSERT_FALSE(saved.Names().empty());
      for (const std::string& name : saved.Names()) {
        const std::string want =
            MegatronShard(name, tensors, hf, rank, c.tp, c.groups);
        EXPECT_FALSE(want.empty()) << "rank " << rank << ": " << name;
        EXPECT_TRUE(saved.Data(name) == want)
            << "rank " << rank << ": " << name;
      }
    }
  }
}

// Copies the checkpoint in `from` into `to` as an HF sharded checkpoint: two
// safetensors files (the first `first` tensors, then the rest) and
// model.safetensors.index.json.
void WriteShardedCopy(const fs::path& from, const fs::path& to, size_t first) {
  fs::create_directories(to);
  fs::copy_file(from / "config.json", to / "config.json");
  const SafetensorsContent st = ReadSafetensors(from / "model.safetensors");
  ASSERT_TRUE(st.header.is_object());
  const std::set<std::string> sorted = st.Names();
  const std::vector<std::string> names(sorted.begin(), sorted.end());
  Json weight_map = Json::object();
  for (int shard = 0; shard < 2; ++shard) {
    const std::string file =
        "model-0000" + std::to_string(shard + 1) + "-of-00002.safetensors";
    Json header = Json::object();
    std::string data;
    const size_t begin = shard == 0 ? 0 : first;
    const size_t end = shard == 0 ? first : names.size();
    for (size_t i = begin; i < end; ++i) {
      const std::string_view bytes = st.Data(names[i]);
      header[names[i]] = {
          {"dtype", st.DType(names[i])},
          {"shape", st.Shape(names[i])},
          {"data_offsets", {data.size(), data.size() + bytes.size()}}};
      data += bytes;
      weight_map[names[i]] = file;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::string length(8, '\0');
    for (int b = 0; b < 8; ++b)
      length[b] = static_cast<char>(text.size() >> (8 * b));
    ASSERT_NO_FATAL_FAILURE(WriteFile(to / file, length + text + data));
  }
  const Json index = {
      {"metadata", {{"total_size", st.bytes.size() - st.data_start}}},
      {"weight_map", weight_map}};
  ASSERT_NO_FATAL_FAILURE(
      WriteFile(to / "model.safetensors.index.json", index.dump(2)));
}

TEST_F(CliTest, ShardedCheckpointIsBitExact) {
  const fs::path sharded = tmp_.path() / "sharded";
  ASSERT_NO_FATAL_FAILURE(WriteShardedCopy(BundledCheckpoint(), sharded, 20));
  ExpectBitExactRefit(sharded, {"tp=2,ep=2", "tp=1,pp=2,ep=2", 4, 0, 0}, tmp_);
  // A shard the index names is missing.
  fs::remove(sharded / "model-00002-of-00002.safetensors");
  const CliResult r = RunCli(RunArgs(sharded, {"tp=2,ep=2", "tp=1", 4, 0, 0}));
  EXPECT_TRUE(IsInputError(r, {"model-00002-of-00002.safetensors"}));
}

// ---------------------------------------------------------------------------
// 6. `refit inspect` totals of the published large configs
// (reference/param_counts.md).

struct InspectCase {
  const char* folder;
  const char* architecture;
  int64_t total_params;
};

std::ostream& operator<<(std::ostream& os, const InspectCase& c) {
  return os << c.folder;
}

constexpr InspectCase kInspectCases[] = {
    {"kimi-k2-instruct", "DeepseekV3ForCausalLM", 1026408232448},
    {"deepseek-v3", "DeepseekV3ForCausalLM", 671026419200},
    {"qwen3-235b-a22b", "Qwen3MoeForCausalLM", 235093634560},
    {"qwen3-coder-480b-a35b", "Qwen3MoeForCausalLM", 480154875392},
    {"minimax-m2", "MiniMaxM2ForCausalLM", 228689764864},
    {"glm-4.6", "Glm4MoeForCausalLM", 352797829024},
    {"llama-3.2-90b-vision", "MllamaForConditionalGeneration", 87666865192},
    {"qwen3-30b-a3b", "Qwen3MoeForCausalLM", 30532122624},
    {"llama-3-8b", "LlamaForCausalLM", 8030261248},
};

class InspectTest : public ::testing::TestWithParam<InspectCase> {};

TEST_P(InspectTest, TotalParams) {
  if (!HaveSharedData()) GTEST_SKIP() << kNoSharedData;
  const InspectCase& c = GetParam();
  const fs::path dir = SharedDir() / "model-configs" / c.folder;
  // The folder and its config.json give the same table.
  const CliResult r = RunCli({"inspect", dir.string()});
  const CliResult by_file = RunCli({"inspect", (dir / "config.json").string()});
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(by_file.exit_code, 0) << by_file;
  EXPECT_EQ(by_file.out, r.out);
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines.front(),
              StartsWith(std::string("# model ") + c.architecture + " "));
  EXPECT_EQ(lines.back(), "total_params: " + std::to_string(c.total_params));
}

INSTANTIATE_TEST_SUITE_P(ModelConfigs, InspectTest,
                         ::testing::ValuesIn(kInspectCases),
                         [](const ::testing::TestParamInfo<InspectCase>& info) {
                           std::string name = info.param.folder;
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch)))
                               ch = '_';
                           }
                           return name;
                         });

// `run --device cuda`: bit-exact on a machine with a GPU; elsewhere one line
// that says why, with no table and no file written.
TEST(CliDeviceTest, CudaRunIsExactOrSaysWhyNot) {
  const CliResult r = RunCli({"run", "--device", "cuda"});
  if (r.exit_code == 0) {
    EXPECT_EQ(TableRow(r.out).back(), "0") << r;  // #wrong
    return;
  }
  EXPECT_TRUE(IsInputError(r, {"cuda"}) || IsInputError(r, {"CUDA"})) << r;
}

// `bench` memory columns: a GPU too small for the scenario is marked and
// noted, the scenario is still planned; an unknown --gpu is an input error.
TEST(CliBenchMemoryTest, FitColumnAndNote) {
  const std::string config =
      std::string(REFIT_DATA_ROOT) + "/data/model-configs/qwen3-30b-a3b";
  const CliResult small =
      RunCli({"bench", "--model", config, "--src", "tp=2", "--dst", "tp=1,ep=2",
              "--world", "2", "--gpu-mem-gb", "10"});
  ASSERT_EQ(small.exit_code, 0) << small;
  EXPECT_NE(small.out.find("| **no** |"), std::string::npos) << small;
  EXPECT_NE(small.out.find("note cli/1: does not fit: "), std::string::npos)
      << small;
  const CliResult h200 =
      RunCli({"bench", "--model", config, "--src", "tp=2", "--dst", "tp=1,ep=2",
              "--world", "2", "--gpu", "h200"});
  ASSERT_EQ(h200.exit_code, 0) << h200;
  EXPECT_NE(h200.out.find("| yes |"), std::string::npos) << h200;
  EXPECT_NE(h200.out.find("GPU 141 GB HBM"), std::string::npos) << h200;
  EXPECT_TRUE(
      IsInputError(RunCli({"bench", "--model", config, "--src", "tp=2", "--dst",
                           "tp=1", "--world", "2", "--gpu", "a100"}),
                   {"--gpu", "a100"}));
}

// --out DIR: the configuration report as markdown (table, recommendation
// per model), as JSON, and its PNG charts.
TEST(CliBenchReportTest, OutWritesReportAndCharts) {
  const std::string config =
      std::string(REFIT_DATA_ROOT) + "/data/model-configs/qwen3-30b-a3b";
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      ("refit-report-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const CliResult r =
      RunCli({"bench", "--model", config, "--src", "tp=2", "--dst", "tp=1,ep=2",
              "--world", "2", "--gpu", "h100", "--out", dir.string()});
  ASSERT_EQ(r.exit_code, 0) << r;
  std::ifstream md(dir / "report.md");
  std::stringstream text;
  text << md.rdbuf();
  EXPECT_NE(text.str().find("## Recommendation per model"), std::string::npos);
  EXPECT_NE(text.str().find("- **" + config + "**: 1: the fastest of 1"),
            std::string::npos)
      << text.str();
  std::ifstream js(dir / "report.json");
  const nlohmann::json j = nlohmann::json::parse(js, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["rows"].size(), 1u);
  EXPECT_EQ(j["recommendations"][0]["scenario"], "1");
  EXPECT_EQ(j["gpu"]["hbm_gb"], 80.0);
  for (const char* png : {"makespan_vs_tlb.png", "gpu_memory.png"}) {
    EXPECT_GT(std::filesystem::file_size(dir / png), 1000u) << png;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace refit::cli
