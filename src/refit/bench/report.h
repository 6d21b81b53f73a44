// Output of `refit bench`: a markdown table per suite and a JSON array.
// Every column is defined in docs/PERFORMANCE.md.
#ifndef REFIT_BENCH_REPORT_H_
#define REFIT_BENCH_REPORT_H_

#include <string>
#include <vector>

#include "refit/bench/bench_runner.h"

namespace refit::bench {

/// A markdown table, one row per scenario (rows of one suite).
std::string MarkdownTable(const std::vector<BenchRow>& rows,
                          const BenchOptions& options);

/// A JSON array, one object per scenario (keys in docs/PERFORMANCE.md).
std::string JsonReport(const std::vector<BenchRow>& rows);

}  // namespace refit::bench

#endif  // REFIT_BENCH_REPORT_H_
