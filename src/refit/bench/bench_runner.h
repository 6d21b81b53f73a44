// Runs one benchmark scenario: plans it at full size, reports its traffic,
// plan cost, lower bound and modeled schedule, and optionally executes it at
// reduced size on the embedded copy service with a bit-exact check.
#ifndef REFIT_BENCH_BENCH_RUNNER_H_
#define REFIT_BENCH_BENCH_RUNNER_H_

#include <cstdint>
#include <string>

#include "refit/bench/scenario.h"
#include "refit/core/schedule.h"
#include "refit/core/traffic.h"

namespace refit::bench {

struct BenchOptions {
  ClusterModel cluster;
  ScheduleOptions schedule;
  int scale = 0;            ///< 0: plan only; K > 0: also run at 1/K widths
  std::string configs_dir;  ///< where scenario models are looked up
  std::string work_dir;     ///< scratch space for --scale checkpoints
};

struct BenchRow {
  Scenario scenario;
  std::string architecture;
  int ranks = 0;
  TrafficStats traffic;
  double plan_ms_all_ranks = 0;  ///< whole plan + every rank's op lists
  double plan_ms_max_rank = 0;   ///< slowest BuildRankReshardPlan
  uint64_t plan_mem_bytes = 0;   ///< heap bytes of the plan and rank plans
  ScheduleModel schedule;
  int scale = 0;
  int64_t wrong = -1;          ///< --scale only: destination shards wrong
  double scaled_refit_ms = 0;  ///< --scale only: median refit time
  uint64_t scaled_bytes = 0;   ///< --scale only: destination bytes
};

/// Errors: the model config cannot be read or built, a layout does not
/// divide (the message names the scenario), or the scaled run fails.
Result<BenchRow> RunScenario(const Scenario& scenario,
                             const BenchOptions& options);

}  // namespace refit::bench

#endif  // REFIT_BENCH_BENCH_RUNNER_H_
