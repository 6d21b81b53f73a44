#include "refit/job/refit_job.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "refit/checkpoint/synthetic.h"
#include "refit/core/test_models.h"
#include "refit/exec/executor.h"
#include "refit/io/test_temp_dir.h"
#include "refit/transport/embedded/embedded_copy_service.h"

namespace refit::exec {
namespace {

namespace fs = std::filesystem;

using ::refit::testing::TempDir;

struct JobCase {
  const char* src;
  int src_world;
  const char* dst;
  int dst_world;
  bool collocated;
};

class EmbeddedJobTest : public ::testing::TestWithParam<JobCase> {};

// A synthetic BF16 Qwen3-MoE checkpoint refit through threads is bit-exact.
TEST_P(EmbeddedJobTest, BitExact) {
  const JobCase c = GetParam();
  const std::string cfg = testing::Qwen3Config(4, 8, "bfloat16");
  ModelSpec spec = testing::MustSpec(cfg);
  TempDir dir;
  ASSERT_TRUE(WriteSyntheticCheckpoint(spec, cfg, dir.str(), 7).ok());
  auto ckpt = io::Checkpoint::Open(dir.str());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  auto bound = BindCheckpoint(spec, *ckpt);
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  const RefitTopology t = testing::MustTopology(spec, c.src, c.src_world, c.dst,
                                                c.dst_world, c.collocated);
  auto plan = BuildReshardPlan(spec, t);
  ASSERT_TRUE(plan.ok());
  auto report = RunEmbeddedRefit(spec, *bound, t, *plan, {2, true, ""});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->wrong, 0u);
  EXPECT_EQ(report->refit_ms.size(), 2u);
  EXPECT_GT(report->memcpy_gbps, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, EmbeddedJobTest,
    ::testing::Values(
        JobCase{"tp=2,ep=2", 4, "tp=1,ep=4", 4, true},
        JobCase{"tp=4,pp=2,ep=2,etp=1", 8, "tp=2,ep=8,etp=1", 8, true},
        JobCase{"tp=2,pp=2,pp_first=1", 4, "tp=4,ep=4,etp=1", 4, true},
        JobCase{"tp=2,ep=4,etp=1", 4, "tp=1,pp=2", 2, false},
        JobCase{"tp=1", 1, "tp=8,ep=8,etp=1", 8, false}));

TEST(ExecutorTest, MissingShardIsAnInternalErrorNamingTheRank) {
  const ModelSpec spec = testing::MustSpec(testing::Qwen3Config(2, 4));
  const RefitTopology t =
      testing::MustTopology(spec, "tp=2", 2, "tp=1", 2, true);
  const ReshardPlan plan = *BuildReshardPlan(spec, t);
  RankBuffers empty;
  empty.src.assign(spec.params.size(), nullptr);
  empty.dst.assign(spec.params.size(), nullptr);
  // Rank 1 never runs: rank 0 still posts its ops (empty) and waits for the
  // fabric's timeout, then returns its own error, not the deadline.
  EmbeddedFabric fabric(2, std::chrono::milliseconds(100));
  auto svc = fabric.Connect(0);
  Status st = ExecuteRankPlan(plan, ExtractRankPlan(plan, 0), empty, *svc);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInternal);
  EXPECT_NE(st.message().find("rank 0 holds no"), std::string::npos);
}

}  // namespace
}  // namespace refit::exec
