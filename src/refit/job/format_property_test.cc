// Random models, layouts and destination formats refit end to end through
// the session on the embedded copy service: every destination shard must
// equal the checkpoint converted by the CPU kernels (MarkWrongDstShards).
// The planner's property tests check coverage; this checks the formats'
// geometry (which side converts, block widening, box placement, scales) on
// layouts nobody picked by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>

#include "refit/checkpoint/synthetic.h"
#include "refit/core/test_models.h"
#include "refit/job/refit_job.h"

namespace refit::exec {
namespace {

namespace fs = std::filesystem;

// A random BF16 Qwen3 (dense or MoE) config: hidden 64, intermediate 96,
// expert width 32.
std::string RandomConfig(std::mt19937& rng) {
  const int layers = 1 + static_cast<int>(rng() % 2);
  const int experts = std::vector<int>{0, 4, 8}[rng() % 3];
  return testing::Qwen3Config(layers, experts, "bfloat16");
}

std::optional<Layout> RandomLayout(
    std::mt19937& rng, const ModelSpec& spec, int world,
    LayoutFamily family = LayoutFamily::kMegatron) {
  auto pick = [&](std::vector<int> v) { return v[rng() % v.size()]; };
  for (int attempt = 0; attempt < 100; ++attempt) {
    ParallelConfig c;
    c.family = family;
    c.tp = pick({1, 2, 4});
    c.pp = pick({1, 1, 2});
    c.ep = pick({1, 2, 4});
    c.etp = pick({0, 1, 2});
    Result<Layout> l = Layout::Create(c, world, spec);
    if (l.ok()) return *l;
  }
  return std::nullopt;
}

// A random destination format: block FP8 (8, 16 or 32-element blocks, F32
// or UE8M0 scales, either side or the default), MXFP8 (plain or swizzled
// scales) or a cast to F16.
PrecisionOptions RandomPrecision(std::mt19937& rng, std::string* what) {
  PrecisionOptions p;
  const int kind = static_cast<int>(rng() % 4);
  const char* dtype = kind < 2 ? "fp8-block" : kind == 2 ? "mxfp8" : "f16";
  EXPECT_TRUE(ApplyDstDType(dtype, p).ok());
  *what = dtype;
  if (kind < 2) {
    const int64_t b = std::vector<int64_t>{8, 16, 32}[rng() % 3];
    p.fp8.block = {b, b};
    if (rng() % 2) p.fp8.scale_format = quant::BlockScaleFormat::kUe8m0;
    const int side = static_cast<int>(rng() % 3);
    if (side < 2) {
      p.quantize_on = side == 0 ? ConvertSide::kSend : ConvertSide::kRecv;
    }
    *what += " block " + std::to_string(b) + " side " + std::to_string(side);
  }
  if (kind == 2) p.mxfp8_swizzled = rng() % 2;
  return p;
}

// Refits the checkpoint in `dir` (of `spec`) over `topo` into `formats` on
// the embedded copy service and expects every destination shard right.
void ExpectBitExactRefit(ModelSpec spec, const std::string& dir,
                         const RefitTopology& topo, const FormatPlan& formats,
                         const PrecisionOptions& precision, int fanout) {
  auto ckpt = io::Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  auto bound = BindCheckpoint(spec, *ckpt);  // amends spec's dtypes
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  PlanOptions po = formats.plan_options();
  po.fanout_gpus_per_node = fanout;
  auto plan = BuildReshardPlan(spec, topo, po);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  RefitJobOptions jo;
  jo.iters = 1;
  jo.formats = &formats;
  jo.precision = precision;
  jo.fanout_gpus_per_node = fanout;
  auto report = RunEmbeddedRefit(spec, *bound, topo, *plan, jo);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->wrong, 0u);
}

// A checkpoint per distinct config, written once (seed `seed`) under `root`.
class Checkpoints {
 public:
  Checkpoints(fs::path root, uint64_t seed)
      : root_(std::move(root)), seed_(seed) {}
  ~Checkpoints() { fs::remove_all(root_); }

  // The spec and folder of `config`'s checkpoint.
  const std::pair<ModelSpec, std::string>& Get(const std::string& config) {
    auto it = map_.find(config);
    if (it != map_.end()) return it->second;
    const std::string dir = (root_ / std::to_string(map_.size())).string();
    ModelSpec spec = testing::MustSpec(config);
    EXPECT_TRUE(WriteSyntheticCheckpoint(spec, config, dir, seed_).ok());
    return map_.emplace(config, std::pair(std::move(spec), dir)).first->second;
  }

 private:
  fs::path root_;
  uint64_t seed_;
  std::map<std::string, std::pair<ModelSpec, std::string>> map_;
};

TEST(FormatPropertyTest, RandomLayoutsAndFormatsRefitBitExact) {
  std::mt19937 rng(20261205);
  Checkpoints checkpoints(
      fs::temp_directory_path() /
          ("refit_format_property_" + std::to_string(::getpid())),
      11);
  int cases = 0;
  for (int trial = 0; trial < 600 && cases < 80; ++trial) {
    const auto& [spec, dir] = checkpoints.Get(RandomConfig(rng));
    const bool collocated = rng() % 2;
    const int sw = 2 << (rng() % 3);  // 2, 4 or 8 ranks a side
    const int dw = collocated ? sw : 2 << (rng() % 3);
    std::optional<Layout> src = RandomLayout(rng, spec, sw);
    std::optional<Layout> dst = RandomLayout(rng, spec, dw);
    std::string what;
    const PrecisionOptions precision = RandomPrecision(rng, &what);
    const int fanout = rng() % 2 ? 2 : 0;
    if (!src || !dst) continue;
    Result<RefitTopology> topo = collocated
                                     ? MakeTopology(*src, *dst, 0, 0, sw)
                                     : MakeTopology(*src, *dst, 0, sw, sw + dw);
    ASSERT_TRUE(topo.ok()) << topo.status().ToString();
    Result<FormatPlan> formats = ResolveFormats(spec, *topo, precision);
    if (!formats.ok()) continue;  // e.g. MXFP8 of a K cut off 32 elements
    SCOPED_TRACE(src->config().ToString() + " -> " + dst->config().ToString() +
                 (collocated ? " collocated, " : " non-collocated, ") + what +
                 ", fan-out " + std::to_string(fanout));
    ExpectBitExactRefit(spec, dir, *topo, *formats, precision, fanout);
    ++cases;
  }
  EXPECT_GE(cases, 60);
}

// Random Megatron sources into random vLLM, SGLang and HF destinations
// (LayoutFamily: QKV as [q_r; k_r; v_r], vocabulary padded to 64, whole HF
// tensors), half of the MoE ones with a random EPLB placement (replicated
// experts), kept or cast to F16, some with node fan-out, bit-exact. The family
// geometry is checked by the planner's coverage check and by the shards'
// expected bytes.
TEST(FormatPropertyTest, RandomLayoutsIntoEngineFamiliesRefitBitExact) {
  std::mt19937 rng(20261206);
  Checkpoints checkpoints(
      fs::temp_directory_path() /
          ("refit_family_property_" + std::to_string(::getpid())),
      12);
  std::map<LayoutFamily, int> cases;
  int placements = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const auto& [spec, dir] = checkpoints.Get(RandomConfig(rng));
    const auto family = static_cast<LayoutFamily>(1 + rng() % 3);
    const bool collocated = rng() % 2;
    const int sw = 2 << (rng() % 2);
    const int dw = collocated ? sw : 1 << (rng() % 3);
    std::optional<Layout> src = RandomLayout(rng, spec, sw);
    std::optional<Layout> dst = RandomLayout(rng, spec, dw, family);
    const bool cast = rng() % 2;
    const int fanout = rng() % 3 == 0 ? 2 : 0;
    if (!src || !dst) continue;
    if (spec.num_experts > 0 && rng() % 2) {  // EPLB: redundant experts
      ParallelConfig c = dst->config();
      c.expert_placement =
          testing::RandomPlacement(rng, spec.num_experts, c.ep);
      Result<Layout> l = Layout::Create(c, dw, spec);
      ASSERT_TRUE(l.ok()) << l.status().ToString();
      dst = *l;
      ++placements;
    }
    Result<RefitTopology> topo = collocated
                                     ? MakeTopology(*src, *dst, 0, 0, sw)
                                     : MakeTopology(*src, *dst, 0, sw, sw + dw);
    ASSERT_TRUE(topo.ok()) << topo.status().ToString();
    PrecisionOptions precision;
    if (cast) ASSERT_TRUE(ApplyDstDType("f16", precision).ok());
    Result<FormatPlan> formats = ResolveFormats(spec, *topo, precision);
    ASSERT_TRUE(formats.ok()) << formats.status().ToString();
    SCOPED_TRACE(src->config().ToString() + " -> " + dst->config().ToString() +
                 (cast ? ", f16" : "") + ", fan-out " + std::to_string(fanout));
    ExpectBitExactRefit(spec, dir, *topo, *formats, precision, fanout);
    if (++cases[family] >= 12 && cases.size() == 3 &&
        std::all_of(cases.begin(), cases.end(),
                    [](const auto& c) { return c.second >= 12; })) {
      break;
    }
  }
  for (const auto& [family, n] : cases) {
    EXPECT_GE(n, 12) << LayoutFamilyName(family);
  }
  EXPECT_EQ(cases.size(), 3u);
  EXPECT_GE(placements, 5);
}

}  // namespace
}  // namespace refit::exec
