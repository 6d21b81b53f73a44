// Per-GPU memory against an independent count (the public ShardShapes of
// every rank), the fit rule, and the named GPUs.
#include "refit/bench/gpu_memory.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "refit/core/test_models.h"
#include "refit/exec/dst_tensors.h"
#include "refit/exec/format_transform.h"
#include "refit/sharded_model.h"

namespace refit::bench {
namespace {

// The most bytes one rank holds, by summing ShardShapes.
// The most staging a real FormatTransform over a rank's allocated
// destination tensors holds before any refit.
uint64_t MaxRankTransformStaging(const ModelSpec& spec,
                                 const FormatPlan& formats,
                                 const Layout& layout) {
  const ModelSpec dst_spec = DestinationSpec(spec, formats);
  uint64_t most = 0;
  for (int r = 0; r < layout.world_size(); ++r) {
    exec::DstTensors dst =
        exec::DstTensors::ForRank(dst_spec, formats, layout, r);
    const exec::FormatTransform t(spec, formats, &dst, r);
    most = std::max(most, t.staging_bytes());
  }
  return most;
}

uint64_t MaxRankBytesByShapes(const ModelSpec& spec, const char* layout,
                              int world, const PrecisionOptions* transform) {
  uint64_t most = 0;
  for (int r = 0; r < world; ++r) {
    auto shapes =
        ShardShapes(spec, *ParseParallelConfig(layout), r, world, transform);
    EXPECT_TRUE(shapes.ok()) << shapes.status().ToString();
    uint64_t bytes = 0;
    for (const ShardShape& s : *shapes) {
      bytes +=
          TensorView{nullptr, s.dtype, s.shape, {}, MemoryKind::kHost}.nbytes();
    }
    most = std::max(most, bytes);
  }
  return most;
}

TEST(GpuMemoryTest, MatchesShardShapesOnBothSides) {
  const ModelSpec spec =
      testing::MustSpec(testing::Qwen3Config(4, 8, "bfloat16"));
  PrecisionOptions fp8;
  ASSERT_TRUE(ApplyDstDType("fp8-block", fp8).ok());
  struct Case {
    const char* src;
    const char* dst;
    int world;
    const PrecisionOptions* transform;
  };
  for (const Case& c : {Case{"tp=2,ep=2", "tp=1,ep=4", 4, nullptr},
                        Case{"tp=4,pp=2", "tp=2,ep=4,etp=1", 8, nullptr},
                        Case{"tp=2,ep=2", "tp=4,ep=1", 4, &fp8}}) {
    const RefitTopology topo =
        testing::MustTopology(spec, c.src, c.world, c.dst, c.world, true);
    const FormatPlan formats = c.transform
                                   ? *ResolveFormats(spec, topo, *c.transform)
                                   : IdentityFormats(spec);
    const ScenarioMemory m = ComputeScenarioMemory(spec, formats, topo, 1000);
    EXPECT_EQ(m.src_weight_bytes,
              MaxRankBytesByShapes(spec, c.src, c.world, nullptr))
        << c.src;
    EXPECT_EQ(m.dst_weight_bytes,
              MaxRankBytesByShapes(spec, c.dst, c.world, c.transform))
        << c.dst;
    EXPECT_TRUE(m.collocated);
    EXPECT_EQ(m.dst_recv_staging_bytes,
              MaxRankTransformStaging(spec, formats, topo.dst))
        << c.dst;
    // TP 4 cuts the 128-row blocks of the fp8 case: its receivers quantise.
    EXPECT_EQ(m.dst_recv_staging_bytes > 0, c.transform != nullptr) << c.dst;
    EXPECT_EQ(m.max_gpu_bytes(), m.src_weight_bytes + m.dst_weight_bytes +
                                     m.dst_recv_staging_bytes + 1000);
  }
}

TEST(GpuMemoryTest, FitRule) {
  ScenarioMemory m;
  m.src_weight_bytes = 50'000'000'000;
  m.dst_weight_bytes = 60'000'000'000;
  m.staging_bytes = 1'000'000'000;
  EXPECT_EQ(m.max_gpu_bytes(), 61'000'000'000u);  // separate GPUs
  EXPECT_TRUE(m.Fits({80, 0.9}));                 // 72 GB budget
  EXPECT_FALSE(m.Fits({80, 0.75}));               // 60 GB budget
  m.collocated = true;                            // both on one GPU
  EXPECT_EQ(m.max_gpu_bytes(), 111'000'000'000u);
  EXPECT_FALSE(m.Fits({80, 0.9}));
  EXPECT_TRUE(m.Fits({141, 0.9}));
}

TEST(GpuMemoryTest, NamedGpus) {
  EXPECT_EQ(*GpuHbmGb("h100"), 80.0);
  EXPECT_EQ(*GpuHbmGb("h200"), 141.0);
  EXPECT_EQ(*GpuHbmGb("b200"), 192.0);
  const Status st = GpuHbmGb("a100").status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("'a100'"), std::string::npos);
}

}  // namespace
}  // namespace refit::bench
