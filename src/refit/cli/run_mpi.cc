#include "refit/cli/run_mpi.h"

#include <chrono>
#include <optional>

#include "refit/cli/commands.h"
#include "refit/cli/engine_check.h"
#include "refit/cli/plan_json.h"
#include "refit/cli/run_report.h"
#include "refit/job/mpi/mpi_refit_job.h"
#include "refit/transport/mpi/mpi_world.h"

namespace refit::cli {

namespace {

// What this rank read and planned on its own.
struct RankInputs {
  RunSetup setup;
  ReshardPlan plan;  // BuildRankReshardPlan of this rank
  double plan_ms = 0;
};

exec::MpiRefitOptions MpiOptions(const RunOptions& o) {
  exec::MpiRefitOptions options;
  options.iters = o.iters;
  options.baseline = o.baseline;
  options.copy.timeout = o.timeout();
  options.copy.schedule.max_staging_bytes = o.max_staging_bytes;
  options.save_dir = o.save_dir;
  options.fanout_gpus_per_node = o.fanout_gpus_per_node;
  options.verify = o.verify_mode();
  options.atomic = o.atomic;
  return options;
}

Status CheckMpiOptions(const exec::MpiRefitOptions& options) {
  const ScheduleOptions& schedule = options.copy.schedule;
  if (schedule.chunk_bytes() == 0) {
    return InvalidArgument("--max-staging-bytes must be at least " +
                           std::to_string(2 * schedule.max_inflight));
  }
  return OkStatus();
}

// --dump-plan: rank 0 builds the whole plan (as the embedded run does) and
// writes it.
Status DumpPlan(const std::string& path, const RunSetup& s) {
  REFIT_ASSIGN_OR_RETURN(ReshardPlan plan,
                         BuildReshardPlan(s.spec, *s.topo, s.plan_options));
  return WriteAtomically(path, PlanJson(s.spec, *s.topo, plan));
}

// Reads the inputs and plans this rank's part; rank 0 also writes
// --dump-plan, so that an error writing it ends every rank like bad input.
Result<RankInputs> ReadRankInputs(const RunOptions& o,
                                  const exec::MpiRefitOptions& options,
                                  const exec::MpiWorld& world) {
  REFIT_RETURN_IF_ERROR(CheckMpiOptions(options));
  RankInputs in;
  REFIT_ASSIGN_OR_RETURN(in.setup, PrepareRun(o, world.size()));
  const RunSetup& s = in.setup;
  const auto t0 = std::chrono::steady_clock::now();
  REFIT_ASSIGN_OR_RETURN(
      in.plan,
      BuildRankReshardPlan(s.spec, *s.topo, world.rank(), s.plan_options));
  in.plan_ms = std::chrono::duration<double, std::milli>(
                   std::chrono::steady_clock::now() - t0)
                   .count();
  if (world.rank() == 0 && !o.dump_plan.empty()) {
    REFIT_RETURN_IF_ERROR(DumpPlan(o.dump_plan, s));
  }
  return in;
}

}  // namespace

void AbortMpiJob(exec::MpiWorld& world, const Status& st) {
  Fail(st);
  world.Abort(2);
}

int EndWithInputError(exec::MpiWorld& world, const Status& agreed) {
  if (world.broken()) AbortMpiJob(world, agreed);
  Fail(agreed);
  // Once one rank exits with an error mpirun stops the others: let every
  // rank print its line first.
  (void)world.Barrier("after the input error");
  return 2;
}

bool LaunchedAsMpiRanks() { return exec::MpiWorld::LaunchSize() > 1; }

int RunMpiRun(const RunOptions& o) {
  auto world_or = exec::MpiWorld::Init(o.timeout());
  if (!world_or.ok()) return Fail(world_or.status());
  exec::MpiWorld& world = **world_or;
  exec::MpiRefitOptions options = MpiOptions(o);
  Result<RankInputs> in = ReadRankInputs(o, options, world);
  const Status agreed = exec::AgreeOnInputs(
      world, in.ok() ? Result<std::string>(
                           exec::InputsRecord(in->setup.spec, *in->setup.topo))
                     : in.status());
  if (!agreed.ok()) return EndWithInputError(world, agreed);
  const RunSetup& s = in->setup;
  if (world.rank() == 0) LogSkippedTensors(s);
  options.formats = &s.formats;
  options.precision = s.precision;
  std::string no_check;
  if (auto check = MakeEngineCheck(o, s, &no_check)) options.dst_check = *check;
  auto report = exec::RunMpiRefit(world, s.spec, s.bound, *s.topo, in->plan,
                                  in->plan_ms, options);
  if (!report.ok()) AbortMpiJob(world, report.status());
  if (!report->save.ok()) {
    // Every rank knows; rank 0 prints it, as the embedded run would.
    if (world.rank() == 0) Fail(report->save);
    return 2;
  }
  if (world.rank() == 0) {
    RunResult result{
        in->plan.dst_tensors,
        report->bytes_remote,
        report->bytes_local,
        report->messages,
        report->plan_ms,
        report->job,
        o.baseline ? std::optional(report->alltoallv_ms_median) : std::nullopt};
    result.bytes_wire = report->bytes_wire;
    result.bytes_forwarded = report->bytes_forwarded;
    PrintRunTable(o, s, result);
    PrintEngineCheck(*s.topo, report->job, no_check);
    const Status st = WriteRunJson(o, s, result);
    if (!st.ok()) return Fail(st);
  }
  return report->job.wrong == 0 && report->job.checked_wrong == 0 ? 0 : 1;
}

}  // namespace refit::cli
