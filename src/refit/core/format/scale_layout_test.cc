#include "refit/core/format/scale_layout.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "refit/core/quant/block_fp8.h"
#include "refit/core/quant/float_cast.h"
#include "refit/core/test_models.h"

namespace refit {
namespace {

using testing::MustSpec;

// A Llama-style dense model whose gated fc1 is [gate; up] of 200 rows each
// (not a multiple of 128) over hidden 256, in BF16.
ModelSpec Model() {
  return MustSpec(R"({"architectures": ["LlamaForCausalLM"],
    "model_type": "llama", "hidden_size": 256, "intermediate_size": 200,
    "num_hidden_layers": 1, "num_attention_heads": 8,
    "num_key_value_heads": 8, "vocab_size": 1024,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16"})");
}

size_t IndexOf(const ModelSpec& spec, const std::string& name) {
  for (size_t i = 0; i < spec.params.size(); ++i) {
    if (spec.params[i].name == name) return i;
  }
  ADD_FAILURE() << name;
  return 0;
}

std::vector<std::byte> RandomBf16(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<std::byte> out(n * 2);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = quant::F32ToBf16(dist(rng) * (1 + i % 7));
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

// Rows [r0, r0 + n) of a row-major [*, k] matrix of `es`-byte elements.
std::vector<std::byte> Rows(const std::vector<std::byte>& m, int64_t k,
                            int64_t r0, int64_t n, size_t es) {
  return {m.begin() + r0 * k * es, m.begin() + (r0 + n) * k * es};
}

// Each shard of a TP split quantised on its own (widened to the global
// blocks it touches) equals the HF tensors quantised whole and sliced: the
// rule a DeepSeek-V3 checkpoint sliced by TP follows.
TEST(ScaleLayoutTest, TpShardsMatchTheWholeTensorQuantisedPerHfPart) {
  const ModelSpec spec = Model();
  const ParamSpec& p =
      spec.params[IndexOf(spec, "decoder.layers.0.mlp.linear_fc1.weight")];
  ASSERT_EQ(p.shape, (std::vector<int64_t>{400, 256}));
  const int64_t k = 256, half = 200;
  const std::vector<std::byte> full = RandomBf16(400 * k, 1);
  // The reference: gate and up quantised as the HF tensors they are.
  quant::BlockFp8Options o;
  std::vector<std::byte> data[2], scales[2];
  for (int h = 0; h < 2; ++h) {
    const std::vector<std::byte> part = Rows(full, k, h * half, half, 2);
    data[h].resize(half * k);
    scales[h].resize(2 * 2 * 4);
    ASSERT_TRUE(quant::QuantizeBlockFp8(part, DType::kBF16, half, k, o, data[h],
                                        scales[h])
                    .ok());
  }
  ParamFormat f;
  f.kind = FormatKind::kFp8Block;
  f.src_dtype = DType::kBF16;
  f.dtype = DType::kF8E4M3;
  f.recv_block = 128;
  for (int tp : {1, 2, 4, 8}) {
    const Layout layout = *Layout::Create(
        *ParseParallelConfig("tp=" + std::to_string(tp)), tp, spec);
    for (int c = 0; c < tp; ++c) {
      const ShardGeometry g = ShardOf(p, layout, c);
      const ShardGeometry recv = ExpandToBlocks(p, g, 128);
      // Assemble the widened receive buffer from the full tensor.
      std::vector<std::byte> in;
      for (const Segment& s : recv.segments) {
        const auto rows = Rows(full, k, s.global_start, s.length, 2);
        in.insert(in.end(), rows.begin(), rows.end());
      }
      const ScaleLayout sl = ScaleLayoutOf(p, f, g);
      std::vector<std::byte> got(g.LocalElements()), got_scales(sl.bytes);
      ASSERT_TRUE(QuantizeShard(p, f, recv, in, g, got, got_scales).ok());
      // Expected: each segment's rows of its HF part, and the scale rows of
      // the blocks it touches.
      std::vector<std::byte> want, want_scales;
      for (const Segment& s : g.segments) {
        const int h = s.global_start >= half;
        const int64_t r0 = s.global_start - h * half;
        const auto rows = Rows(data[h], k, r0, s.length, 1);
        want.insert(want.end(), rows.begin(), rows.end());
        const int64_t b0 = r0 / 128, b1 = (r0 + s.length + 127) / 128;
        const auto srows = Rows(scales[h], 2, b0, b1 - b0, 4);
        want_scales.insert(want_scales.end(), srows.begin(), srows.end());
      }
      EXPECT_EQ(got, want) << "tp " << tp << " shard " << c;
      EXPECT_EQ(got_scales, want_scales) << "tp " << tp << " shard " << c;
      EXPECT_EQ(sl.rows * sl.cols * 4, static_cast<int64_t>(sl.bytes));
    }
  }
}

TEST(ScaleLayoutTest, ExpandToBlocksKeepsHfParts) {
  const ModelSpec spec = Model();
  const ParamSpec& p =
      spec.params[IndexOf(spec, "decoder.layers.0.mlp.linear_fc1.weight")];
  const Layout tp4 = *Layout::Create(*ParseParallelConfig("tp=4"), 4, spec);
  // Shard 1 holds gate rows [50, 100) and up rows [250, 300).
  const ShardGeometry g = ShardOf(p, tp4, 1);
  const ShardGeometry w = ExpandToBlocks(p, g, 128);
  ASSERT_EQ(w.segments.size(), 2u);
  EXPECT_EQ(w.segments[0].global_start, 0);
  EXPECT_EQ(w.segments[0].length, 128);
  EXPECT_EQ(w.segments[1].global_start, 200);
  EXPECT_EQ(w.segments[1].local_start, 128);
  EXPECT_EQ(w.segments[1].length, 128);
  EXPECT_EQ(w.local_shape, (std::vector<int64_t>{256, 256}));
  // The last shard's up rows [350, 400) widen to [328, 400): the part end.
  const ShardGeometry last = ExpandToBlocks(p, ShardOf(p, tp4, 3), 128);
  EXPECT_EQ(last.segments[1].global_start, 328);
  EXPECT_EQ(last.segments[1].length, 72);
}

TEST(ScaleLayoutTest, Mxfp8LayoutIsLocalRowsByKOver32) {
  const ModelSpec spec = Model();
  const ParamSpec& p = spec.params[IndexOf(
      spec, "decoder.layers.0.self_attention.linear_proj.weight")];
  const Layout tp4 = *Layout::Create(*ParseParallelConfig("tp=4"), 4, spec);
  ParamFormat f;
  f.kind = FormatKind::kMxfp8;
  const ScaleLayout plain = ScaleLayoutOf(p, f, ShardOf(p, tp4, 0));
  EXPECT_EQ(plain.rows, 256);
  EXPECT_EQ(plain.cols, 64 / 32);
  EXPECT_EQ(plain.bytes, 512u);
  f.swizzled = true;
  const ScaleLayout sw = ScaleLayoutOf(p, f, ShardOf(p, tp4, 0));
  EXPECT_EQ(sw.bytes, 256u * 4);  // padded to 2 x 1 tiles of 128 x 4
}

}  // namespace
}  // namespace refit
