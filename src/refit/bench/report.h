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

/// The configuration report of `refit bench --out DIR` (report.md): the
/// table, then one recommendation per model (Recommend).
std::string MarkdownReport(const std::vector<BenchRow>& rows,
                           const BenchOptions& options);

/// The same as JSON (report.json): {"gpu": {hbm_gb, headroom,
/// budget_bytes}, "rows": JsonReport's objects, "recommendations": [{model,
/// scenario, why}]}; bench/plot_report.py draws its charts from it.
std::string JsonFullReport(const std::vector<BenchRow>& rows,
                           const BenchOptions& options);

}  // namespace refit::bench

#endif  // REFIT_BENCH_REPORT_H_
