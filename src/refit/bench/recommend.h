// The per-model recommendation of `refit bench --suite models`: of each
// model's inference candidates, the fitting one with the shortest modeled
// makespan, and why.
#ifndef REFIT_BENCH_RECOMMEND_H_
#define REFIT_BENCH_RECOMMEND_H_

#include <string>
#include <vector>

#include "refit/bench/bench_runner.h"

namespace refit::bench {

struct Recommendation {
  std::string model;
  std::string scenario;  ///< the chosen row's name; "" when none fits
  std::string why;       ///< one sentence with the figures behind it
};

/// One recommendation per model of `rows`, in order of first appearance:
/// among its rows that fit `gpu`, the smallest modeled makespan (ties: the
/// fewer destination GPUs, then the fewer wire bytes, then the first row;
/// the makespan is modeled on the plan's unconverted bytes, so an FP8
/// destination wins only the tie with its BF16 twin). When none fits, the
/// scenario is "" and `why` names the row with the least memory on its most
/// loaded GPU.
std::vector<Recommendation> Recommend(const std::vector<BenchRow>& rows,
                                      const GpuMemory& gpu);

}  // namespace refit::bench

#endif  // REFIT_BENCH_RECOMMEND_H_
