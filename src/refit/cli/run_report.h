// What `refit run` reports: one header and one table row on stdout, and the
// same as JSON (--json), alike for the embedded and the multi-process job.
#ifndef REFIT_CLI_RUN_REPORT_H_
#define REFIT_CLI_RUN_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "refit/cli/run_setup.h"
#include "refit/core/status.h"
#include "refit/job/refit_job.h"

namespace refit::cli {

/// The plan's totals and the refit's measurements.
struct RunResult {
  uint64_t tensors = 0;       ///< destination shards written
  uint64_t bytes_remote = 0;  ///< bytes that change rank
  uint64_t bytes_local = 0;   ///< bytes copied within a rank
  uint64_t messages = 0;      ///< remote transfer ops
  double plan_ms = 0;         ///< time to build the plan
  exec::RefitJobReport job;
  /// Under mpirun with --baseline (instead of job's memcpy baseline): the
  /// median time of MPI_Alltoallv of the same per-pair bytes.
  std::optional<double> alltoallv_ms_median;
  /// Bytes on the wire between ranks after sender-side conversion
  /// (PlanWireBytes); equals bytes_remote when nothing converts. 0 = unknown.
  uint64_t bytes_wire = 0;
  /// Node fan-out: bytes leaders forward inside their node after the
  /// remote bytes (ReshardPlan::bytes_forwarded); 0 without.
  uint64_t bytes_forwarded = 0;
};

/// Prints the header lines and the table row on stdout.
void PrintRunTable(const RunOptions& o, const RunSetup& s, const RunResult& r);

/// With --also-dst: a line per other destination (layout, ranks, shards
/// wrong) and one with the pass's destination bytes and bytes copied.
void PrintAlsoDestinations(const RunSetup& s, const exec::RefitJobReport& j);

/// The line of a run whose destination was checked by name against the
/// engine reference (RefitJobReport::checked_*), or why it was not
/// (`why_not`, for a vllm / sglang / hf destination); nothing for Megatron.
void PrintEngineCheck(const RefitTopology& t, const exec::RefitJobReport& j,
                      const std::string& why_not);

/// Writes the result as one JSON object to o.json_path (nothing when empty).
/// Errors: kIoError naming the file.
Status WriteRunJson(const RunOptions& o, const RunSetup& s, const RunResult& r);

/// Writes `text` to `path` through a temporary file and a rename, so no
/// partial file is left behind. Errors: kIoError naming the file.
Status WriteAtomically(const std::string& path, const std::string& text);

}  // namespace refit::cli

#endif  // REFIT_CLI_RUN_REPORT_H_
