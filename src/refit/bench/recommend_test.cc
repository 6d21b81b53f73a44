#include "refit/bench/recommend.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace refit::bench {
namespace {

using ::testing::HasSubstr;

BenchRow Row(const std::string& model, const std::string& name, int gpus,
             double makespan_ms, double gb, const GpuMemory& gpu) {
  BenchRow r;
  r.scenario.model = model;
  r.scenario.name = name;
  r.scenario.dst_world = gpus;
  r.schedule.makespan_ms = makespan_ms;
  r.schedule.t_lb_ms = makespan_ms * 0.9;
  r.memory.collocated = false;
  r.memory.dst_weight_bytes = static_cast<uint64_t>(gb * 1e9);
  r.fits = r.memory.Fits(gpu);
  return r;
}

// The fastest fitting row wins (a faster one that does not fit is passed
// over; equal makespans go to fewer GPUs, then to fewer wire bytes); a
// model with no fitting row gets none and the leanest row named.
TEST(RecommendTest, FastestFittingRowPerModel) {
  const GpuMemory gpu{80, 0.9};  // 72 GB budget
  const std::vector<BenchRow> rows = {
      Row("a", "a/tp4-fp8", 4, 900, 60, gpu),
      Row("a", "a/tp8-bf16", 8, 500, 90, gpu),  // faster, does not fit
      Row("a", "a/tp8-fp8", 8, 700, 40, gpu),
      Row("a", "a/tp4-bf16", 4, 700, 70, gpu),  // ties a/tp8-fp8, fewer GPUs
      Row("b", "b/tp4", 4, 100, 300, gpu),
      Row("b", "b/tp8", 8, 80, 150, gpu),
  };
  std::vector<BenchRow> with_fp8 = rows;
  BenchRow fp8 = Row("a", "a/tp4-bf16-as-fp8", 4, 700, 50, gpu);
  fp8.wire_source_bytes = 100;
  fp8.wire_bytes = 50;
  with_fp8[3].traffic.moved_bytes = 100;  // a/tp4-bf16
  with_fp8.push_back(fp8);
  EXPECT_EQ(Recommend(with_fp8, gpu)[0].scenario, "a/tp4-bf16-as-fp8");
  const std::vector<Recommendation> recs = Recommend(rows, gpu);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].model, "a");
  EXPECT_EQ(recs[0].scenario, "a/tp4-bf16");
  EXPECT_THAT(recs[0].why, HasSubstr("the fastest of 3 fitting candidates "
                                     "(of 4): modeled makespan 700 ms"));
  EXPECT_EQ(recs[1].model, "b");
  EXPECT_EQ(recs[1].scenario, "");
  EXPECT_THAT(recs[1].why,
              HasSubstr("none of 2 candidates fits: the leanest, b/tp8, "
                        "needs 150.0 GB"));
}

}  // namespace
}  // namespace refit::bench
