// End-to-end tests of destination formats: `refit run --dst-dtype ...`,
// `--cast`, `--cast-on`, `--quantize-on`, `--fp8-block`, `--save` of
// quantised weights, and their input errors. The product checks every shard
// against the checkpoint converted directly; these tests also decode the
// saved FP8 bytes themselves and compare them with the checkpoint values.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "refit/cli/cli_test_util.h"

namespace refit::cli {
namespace {

using namespace ::refit::cli::testing;  // NOLINT: the test helpers
using ::testing::HasSubstr;

fs::path Bundled(const std::string& name) {
  return fs::path(REFIT_SOURCE_DIR) / "data" / "checkpoints" / name;
}

struct FormatCase {
  const char* name;
  const char* checkpoint;  // under data/checkpoints
  const char* src;
  const char* dst;
  std::vector<std::string> options;
  int quantised;      // expected "quantised" of the JSON report
  int casts;          // expected "casts"
  bool smaller_wire;  // wire bytes < remote source bytes
};

void PrintTo(const FormatCase& c, std::ostream* os) { *os << c.name; }

class FormatRunTest : public ::testing::TestWithParam<FormatCase> {};

TEST_P(FormatRunTest, RefitIntoTheFormatIsBitExact) {
  const FormatCase& c = GetParam();
  const TempDir tmp;
  const std::string json = tmp / "r.json";
  std::vector<std::string> args = {"run",
                                   "--checkpoint",
                                   Bundled(c.checkpoint).string(),
                                   "--src",
                                   c.src,
                                   "--dst",
                                   c.dst,
                                   "--world",
                                   "4",
                                   "--iters",
                                   "2",
                                   "--json",
                                   json};
  args.insert(args.end(), c.options.begin(), c.options.end());
  const CliResult r = RunCli(args);
  ASSERT_EQ(r.exit_code, 0) << r;
  const std::vector<std::string> row = TableRow(r.out);
  ASSERT_EQ(row.size(), 9u) << r;
  EXPECT_EQ(row.back(), "0") << r;
  const Json j = Json::parse(ReadFile(json), nullptr, false);
  ASSERT_TRUE(j.is_object()) << r;
  EXPECT_EQ(j.value("wrong", -1), 0);
  EXPECT_EQ(j.value("quantised", -1), c.quantised) << j.dump(2);
  EXPECT_EQ(j.value("casts", -1), c.casts) << j.dump(2);
  const int64_t wire = j.value("bytes_wire", int64_t{-1});
  const int64_t remote = j.value("bytes_remote", int64_t{-1});
  if (c.smaller_wire) {
    EXPECT_LT(wire, remote) << j.dump(2);
  } else {
    EXPECT_EQ(wire, remote) << j.dump(2);
  }
  EXPECT_THAT(r.out, HasSubstr("# formats: "));
}

// agilerl-tiny-qwen3-moe: F32, hidden 64, 4 experts of width 32, 2 layers:
// 20 quantisable weights (per layer linear_qkv, linear_proj and 4 experts x
// {fc1, fc2}) among 33 parameters. fp8-block with 16 x 16 blocks holds whole
// blocks on both sides (sender quantises, wire shrinks); 128 x 128 blocks are
// cut by any TP here (receiver quantises).
const FormatCase kFormatCases[] = {
    {"Bf16OnSend",
     "agilerl-tiny-qwen3-moe",
     "tp=2,ep=2",
     "tp=1,ep=4",
     {"--dst-dtype", "bf16"},
     0,
     33,
     true},
    // --baseline fills the destination memory, vocabulary padding included,
    // with other bytes before the timed refits; padding is not checked.
    {"Bf16AfterBaselineIgnoresPadding",
     "agilerl-tiny-qwen3-moe",
     "tp=1,ep=4",
     "tp=2,ep=2",
     {"--dst-dtype", "bf16", "--baseline"},
     0,
     33,
     true},
    {"Bf16OnRecv",
     "agilerl-tiny-qwen3-moe",
     "tp=2,ep=2",
     "tp=1,ep=4",
     {"--dst-dtype", "bf16", "--cast-on", "recv"},
     0,
     33,
     false},
    {"F16ExpertsOnly",
     "agilerl-tiny-qwen3-moe",
     "tp=2,ep=2",
     "tp=4,ep=1",
     {"--cast", "*.experts.*=f16"},
     0,
     16,
     true},
    {"Fp8BlockWholeBlocksOnSend",
     "agilerl-tiny-qwen3-moe",
     "tp=2,ep=2",
     "tp=1,ep=4",
     {"--dst-dtype", "fp8-block", "--fp8-block", "16"},
     20,
     0,
     true},
    {"Fp8BlockCutBlocksOnRecv",
     "agilerl-tiny-qwen3-moe",
     "tp=1,ep=4",
     "tp=4,ep=1",
     {"--dst-dtype", "fp8-block"},
     20,
     0,
     false},
    {"Fp8BlockUe8m0TpCutsBlocks",
     "agilerl-tiny-qwen3-moe",
     "tp=2,ep=2",
     "tp=4,ep=1,etp=4",
     {"--dst-dtype", "fp8-block", "--fp8-block", "32", "--fp8-scale", "ue8m0"},
     20,
     0,
     false},
    {"Mxfp8OnRecv",
     "agilerl-tiny-qwen3-moe",
     "tp=2,ep=2",
     "tp=1,ep=4",
     {"--dst-dtype", "mxfp8"},
     20,
     0,
     false},
    {"Mxfp8OnSend",
     "agilerl-tiny-qwen3-moe",
     "tp=2,ep=2",
     "tp=1,ep=4",
     {"--dst-dtype", "mxfp8", "--quantize-on", "send"},
     20,
     0,
     true},
    {"Mxfp8Swizzled",
     "agilerl-tiny-qwen3-moe",
     "tp=2,ep=2",
     "tp=2,ep=2,etp=1",
     {"--dst-dtype", "mxfp8", "--mxfp8-swizzled"},
     20,
     0,
     false},
    {"DeepSeekV2Fp8Block",
     "neural-api-tiny/deepseek_v2",
     "tp=2,etp=1",
     "tp=1",
     {"--dst-dtype", "fp8-block", "--fp8-block", "2"},
     20,
     0,
     true},
};

INSTANTIATE_TEST_SUITE_P(Formats, FormatRunTest,
                         ::testing::ValuesIn(kFormatCases),
                         [](const auto& info) { return info.param.name; });

// E4M3FN (no infinities, S.1111.111 is NaN) decoded here, independently.
float DecodeE4M3(uint8_t b) {
  const float sign = (b & 0x80) ? -1.0f : 1.0f;
  const int e = (b >> 3) & 0xF, m = b & 7;
  if (e == 0xF && m == 7) return NAN;
  if (e == 0) return sign * std::ldexp(m / 8.0f, -6);
  return sign * std::ldexp(1.0f + m / 8.0f, e - 7);
}

float LoadF32(std::string_view bytes, size_t i) {
  float f;
  std::memcpy(&f, bytes.data() + 4 * i, 4);
  return f;
}

// The saved block-FP8 expert fc1 of rank 0 decodes to the checkpoint's
// [gate; up] values of expert 0 within E4M3 rounding, and every block's
// largest element is ±448 (scale = amax / 448).
TEST(FormatSaveTest, SavedFp8BlockDecodesToTheCheckpoint) {
  const TempDir tmp;
  const std::string save = tmp / "saved";
  const fs::path ckpt = Bundled("agilerl-tiny-qwen3-moe");
  const CliResult r =
      RunCli({"run", "--checkpoint", ckpt.string(), "--src", "tp=2,ep=2",
              "--dst", "tp=1,ep=4", "--world", "4", "--iters", "1",
              "--dst-dtype", "fp8-block", "--fp8-block", "16", "--save", save});
  ASSERT_EQ(r.exit_code, 0) << r;
  const SafetensorsContent st =
      ReadSafetensors(fs::path(save) / "rank-00000.safetensors");
  const std::string w = "decoder.layers.0.mlp.experts.linear_fc1.weight0";
  ASSERT_EQ(st.DType(w), "F8_E4M3");
  ASSERT_EQ(st.Shape(w), (std::vector<int64_t>{64, 64}));
  ASSERT_EQ(st.DType(w + "_scale_inv"), "F32");
  ASSERT_EQ(st.Shape(w + "_scale_inv"), (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(st.DType("decoder.layers.0.mlp.router.weight"), "F32");
  EXPECT_FALSE(st.Has("decoder.layers.0.mlp.router.weight_scale_inv"));
  const std::string_view data = st.Data(w), scales = st.Data(w + "_scale_inv");
  const SafetensorsContent src = ReadSafetensors(ckpt / "model.safetensors");
  const std::string_view gate =
      src.Data("model.layers.0.mlp.experts.0.gate_proj.weight");
  const std::string_view up =
      src.Data("model.layers.0.mlp.experts.0.up_proj.weight");
  ASSERT_EQ(gate.size(), 32u * 64 * 4);
  std::vector<float> block_max(16, 0.0f);
  for (int row = 0; row < 64; ++row) {
    for (int col = 0; col < 64; ++col) {
      const float x = row < 32 ? LoadF32(gate, row * 64 + col)
                               : LoadF32(up, (row - 32) * 64 + col);
      const float s = LoadF32(scales, (row / 16) * 4 + col / 16);
      const float q = DecodeE4M3(static_cast<uint8_t>(data[row * 64 + col]));
      const float tolerance = std::fabs(x) * 0.0625f + s * std::ldexp(1.0f, -9);
      ASSERT_LE(std::fabs(q * s - x), tolerance)
          << "row " << row << " col " << col << " x " << x << " scale " << s;
      float& m = block_max[(row / 16) * 4 + col / 16];
      m = std::max(m, std::fabs(q));
    }
  }
  for (float m : block_max) EXPECT_EQ(m, 448.0f);
}

TEST(FormatSaveTest, SavedMxfp8HasE8M0Scales) {
  const TempDir tmp;
  const std::string save = tmp / "saved";
  for (const bool swizzled : {false, true}) {
    std::vector<std::string> args = {"run",
                                     "--checkpoint",
                                     Bundled("agilerl-tiny-qwen3-moe").string(),
                                     "--src",
                                     "tp=2,ep=2",
                                     "--dst",
                                     "tp=2,ep=2,etp=1",
                                     "--world",
                                     "4",
                                     "--iters",
                                     "1",
                                     "--dst-dtype",
                                     "mxfp8",
                                     "--save",
                                     save};
    if (swizzled) args.push_back("--mxfp8-swizzled");
    const CliResult r = RunCli(args);
    ASSERT_EQ(r.exit_code, 0) << r;
    const SafetensorsContent st =
        ReadSafetensors(fs::path(save) / "rank-00000.safetensors");
    // linear_qkv is [(8 + 2 * 4) heads... ] / TP: checked through the shape
    // of its data; the scale has one byte per 32 elements of each row.
    const std::string w = "decoder.layers.0.self_attention.linear_proj.weight";
    ASSERT_EQ(st.DType(w), "F8_E4M3");
    const std::vector<int64_t> shape = st.Shape(w);
    ASSERT_EQ(shape.size(), 2u);
    EXPECT_EQ(st.DType(w + "_scale"), "U8");
    const int64_t rows = shape[0], cols = shape[1] / 32;
    if (swizzled) {
      const int64_t padded = (rows + 127) / 128 * 128 * ((cols + 3) / 4 * 4);
      EXPECT_EQ(st.Shape(w + "_scale"), (std::vector<int64_t>{padded}));
    } else {
      EXPECT_EQ(st.Shape(w + "_scale"), (std::vector<int64_t>{rows, cols}));
    }
  }
}

// A DeepSeek-V3 checkpoint (BF16, fp32 router weight and expert_bias as
// Megatron keeps them) refit into a BF16 destination: the router weight, a
// parameter, is cast; the expert_bias buffer is harmonised to the source's
// F32 (Megatron _harmonize_buffer_dtypes) and copied exactly.
TEST(FormatHarmoniseTest, ExpertBiasKeepsItsSourceDType) {
  const TempDir tmp;
  const std::string dir = tmp / "dsv3";
  fs::create_directories(dir);
  WriteFile(dir + "/source.json",
            R"({"architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3", "vocab_size": 256, "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 4, "qk_nope_head_dim": 16, "qk_rope_head_dim": 16,
    "v_head_dim": 16, "kv_lora_rank": 32, "q_lora_rank": 32,
    "intermediate_size": 128, "moe_intermediate_size": 32,
    "n_shared_experts": 1, "n_routed_experts": 4, "num_experts_per_tok": 2,
    "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1,
    "topk_method": "noaux_tc", "tie_word_embeddings": false,
    "torch_dtype": "bfloat16"})");
  const CliResult synth =
      RunCli({"synth", "--config", dir + "/source.json", "--out", dir});
  ASSERT_EQ(synth.exit_code, 0) << synth;
  const std::string save = tmp / "saved", json = tmp / "r.json";
  const CliResult r =
      RunCli({"run", "--checkpoint", dir, "--src", "tp=2,etp=1", "--dst",
              "tp=1", "--world", "2", "--iters", "1", "--dst-dtype", "bf16",
              "--save", save, "--json", json});
  ASSERT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(TableRow(r.out).back(), "0") << r;
  EXPECT_THAT(r.out, HasSubstr("1 casts, 0 quantised, 1 converted on the "
                               "sender, 1 buffers harmonised"));
  const SafetensorsContent st =
      ReadSafetensors(fs::path(save) / "rank-00000.safetensors");
  EXPECT_EQ(st.DType("decoder.layers.1.mlp.router.expert_bias"), "F32");
  EXPECT_EQ(st.DType("decoder.layers.1.mlp.router.weight"), "BF16");
  const SafetensorsContent ckpt =
      ReadSafetensors(fs::path(dir) / "model.safetensors");
  EXPECT_EQ(st.Data("decoder.layers.1.mlp.router.expert_bias"),
            ckpt.Data("model.layers.1.mlp.gate.e_score_correction_bias"));
}

// Synthetic Kimi-K2 shapes, scaled down, refit into the engine formats. The
// refit checks every destination shard against the checkpoint converted
// directly; these tests check exit status, #wrong and the report's counts.
class KimiFormatTest : public ::testing::Test {
 protected:
  // `refit synth` of Kimi-K2 at 1/`scale` width with `layers` layers.
  std::string Synth(const std::string& name, int scale, int layers,
                    std::vector<std::string> extra = {}) {
    const std::string dir = tmp_ / name;
    std::vector<std::string> args = {
        "synth",
        "--config",
        std::string(REFIT_SOURCE_DIR) + "/data/model-configs/kimi-k2-instruct",
        "--out",
        dir,
        "--scale",
        std::to_string(scale),
        "--layers",
        std::to_string(layers)};
    args.insert(args.end(), extra.begin(), extra.end());
    const CliResult r = RunCli(args);
    EXPECT_EQ(r.exit_code, 0) << r;
    return dir;
  }

  // Runs `refit run` and returns its JSON report (null on failure).
  Json Run(const std::string& ckpt, std::vector<std::string> args) {
    const std::string json = tmp_ / "r.json";
    fs::remove(json);
    args.insert(args.begin(),
                {"run", "--checkpoint", ckpt, "--iters", "1", "--json", json});
    const CliResult r = RunCli(args);
    EXPECT_EQ(r.exit_code, 0) << r;
    if (r.exit_code != 0) return Json();
    EXPECT_EQ(TableRow(r.out).back(), "0") << r;
    return Json::parse(ReadFile(json), nullptr, false);
  }

  TempDir tmp_;
};

// 1/32 width, 2 layers (the dense layer and an MoE layer of 384 experts):
// TP=4 cuts the 128-row blocks of the dense fc1 (576 / 4 = 144 rows per
// half) and of the shared expert (64 / 4), which the receivers assemble and
// quantise; the others are quantised by their senders.
TEST_F(KimiFormatTest, Fp8BlockWithTpCuttingBlocks) {
  const std::string ckpt = Synth("k32", 32, 2);
  const std::vector<std::string> layouts = {
      "--src", "tp=1,ep=4,etp=1", "--dst",    "tp=4,ep=2,etp=1", "--world",
      "8",     "--dst-dtype",     "fp8-block"};
  const Json send = Run(ckpt, layouts);
  ASSERT_TRUE(send.is_object());
  EXPECT_EQ(send.value("quantised", -1), 782);
  const int64_t senders = send.value("send_side", -1);
  EXPECT_GT(senders, 0);
  EXPECT_LT(senders, 782);
  EXPECT_LT(send.value("bytes_wire", int64_t{0}),
            send.value("bytes_remote", int64_t{0}));
  std::vector<std::string> recv = layouts;
  recv.insert(recv.end(), {"--quantize-on", "recv", "--fp8-scale", "ue8m0"});
  const Json j = Run(ckpt, recv);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.value("send_side", -1), 0);
  EXPECT_EQ(j.value("bytes_wire", int64_t{0}),
            j.value("bytes_remote", int64_t{-1}));
}

// 1/16 width, the dense first layer: every K is a multiple of 32.
TEST_F(KimiFormatTest, Mxfp8EverySideAndLayout) {
  const std::string ckpt = Synth("k16", 16, 1);
  for (const std::vector<std::string>& extra : {std::vector<std::string>{},
                                                {"--quantize-on", "send"},
                                                {"--mxfp8-swizzled"}}) {
    std::vector<std::string> args = {
        "--src", "tp=2",        "--dst", "tp=4",        "--src-world",
        "2",     "--dst-world", "4",     "--dst-dtype", "mxfp8"};
    args.insert(args.end(), extra.begin(), extra.end());
    const Json j = Run(ckpt, args);
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j.value("quantised", -1), 7);
  }
}

// A block-FP8 Kimi-K2 checkpoint (F8_E4M3 weights + F32 weight_scale_inv,
// 8 x 8 blocks so that TP=4 keeps them whole): kept as FP8 end to end,
// dequantised to BF16, or dequantised and quantised again.
TEST_F(KimiFormatTest, Fp8SourceKeptOrDequantised) {
  const std::string ckpt =
      Synth("kfp8", 64, 2, {"--dtype", "fp8-block", "--fp8-block-size", "8"});
  const std::vector<std::string> layouts = {"--src", "tp=2",    "--dst",
                                            "tp=4",  "--world", "8"};
  std::vector<std::string> keep = layouts;
  keep.insert(keep.end(), {"--fp8-source", "keep"});
  const Json kept = Run(ckpt, keep);
  ASSERT_TRUE(kept.is_object());
  EXPECT_EQ(kept.value("kept_fp8", -1), 782);
  const Json deq = Run(ckpt, layouts);
  ASSERT_TRUE(deq.is_object());
  EXPECT_EQ(deq.value("kept_fp8", -1), 0);
  // Kept FP8 moves 1 byte per element plus scales; dequantised BF16 two.
  EXPECT_LT(kept.value("bytes_wire", int64_t{0}),
            deq.value("bytes_wire", int64_t{0}));
  std::vector<std::string> requant = layouts;
  requant.insert(requant.end(), {"--dst-dtype", "fp8-block"});
  EXPECT_TRUE(Run(ckpt, requant).is_object());
  // Re-blocking a kept source is refused, not silently ignored.
  std::vector<std::string> reblock = {"run", "--checkpoint", ckpt};
  reblock.insert(reblock.end(), keep.begin(), keep.end());
  reblock.insert(reblock.end(), {"--dst-dtype", "fp8-block"});
  EXPECT_TRUE(IsInputError(RunCli(reblock),
                           {"cannot be cast, re-blocked or re-quantised"}));
  // TP=8 of the dense fc1 (288 / 8 = 36 rows) cuts its 8-row blocks.
  const CliResult cut =
      RunCli({"run", "--checkpoint", ckpt, "--src", "tp=8", "--dst", "tp=2",
              "--world", "8", "--fp8-source", "keep"});
  EXPECT_TRUE(IsInputError(
      cut, {"the source is kept as block FP8", "--fp8-source dequantise"}));
}

struct FormatErrorCase {
  const char* name;
  const char* checkpoint;
  std::vector<std::string> options;
  std::vector<std::string> needles;
};

void PrintTo(const FormatErrorCase& c, std::ostream* os) { *os << c.name; }

class FormatErrorTest : public ::testing::TestWithParam<FormatErrorCase> {};

TEST_P(FormatErrorTest, FailsWithOneLineNamingTheProblem) {
  const FormatErrorCase& c = GetParam();
  const TempDir tmp;
  const std::string json = tmp / "r.json";
  std::vector<std::string> args = {
      "run", "--checkpoint", Bundled(c.checkpoint).string(), "--json", json};
  args.insert(args.end(), c.options.begin(), c.options.end());
  const CliResult r = RunCli(args);
  EXPECT_TRUE(IsInputError(r, c.needles));
  EXPECT_FALSE(fs::exists(json));
}

const FormatErrorCase kFormatErrors[] = {
    {"UnknownDstDType",
     "agilerl-tiny-qwen3-moe",
     {"--dst-dtype", "fp4"},
     {"--dst-dtype", "fp4"}},
    {"CastWithoutDType",
     "agilerl-tiny-qwen3-moe",
     {"--cast", "*.weight"},
     {"--cast", "*.weight", "PATTERN=bf16|f16|f32"}},
    {"CastToFp8",
     "agilerl-tiny-qwen3-moe",
     {"--cast", "*=fp8"},
     {"--cast", "*=fp8"}},
    {"UnknownCastSide",
     "agilerl-tiny-qwen3-moe",
     {"--dst-dtype", "bf16", "--cast-on", "both"},
     {"--cast-on", "both"}},
    {"UnknownQuantizeSide",
     "agilerl-tiny-qwen3-moe",
     {"--dst-dtype", "mxfp8", "--quantize-on", "gpu"},
     {"--quantize-on", "gpu"}},
    {"UnknownFp8Scale",
     "agilerl-tiny-qwen3-moe",
     {"--dst-dtype", "fp8-block", "--fp8-scale", "e4m3"},
     {"--fp8-scale", "e4m3"}},
    {"Mxfp8KNotMultipleOf32",
     "neural-api-tiny/deepseek_v2",
     {"--src", "tp=1", "--dst", "tp=1", "--dst-dtype", "mxfp8"},
     {"tensor decoder.layers.0.self_attention.", "MXFP8 needs K (8)"}},
};

INSTANTIATE_TEST_SUITE_P(Formats, FormatErrorTest,
                         ::testing::ValuesIn(kFormatErrors),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace refit::cli
