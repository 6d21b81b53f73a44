#include "refit/cli/run_mpi.h"

#include <chrono>
#include <optional>

#include "refit/cli/commands.h"
#include "refit/cli/run_report.h"
#include "refit/exec/mpi/mpi_refit_job.h"
#include "refit/exec/mpi/mpi_world.h"

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
  return options;
}

Status CheckMpiOptions(const RunOptions& o,
                       const exec::MpiRefitOptions& options) {
  if (!o.save_dir.empty() || !o.dump_plan.empty()) {
    return InvalidArgument(
        "--save and --dump-plan are not supported under mpirun");
  }
  const ScheduleOptions& schedule = options.copy.schedule;
  if (schedule.chunk_bytes() == 0) {
    return InvalidArgument("--max-staging-bytes must be at least " +
                           std::to_string(2 * schedule.max_inflight));
  }
  return OkStatus();
}

Result<RankInputs> ReadRankInputs(const RunOptions& o,
                                  const exec::MpiRefitOptions& options,
                                  const exec::MpiWorld& world) {
  REFIT_RETURN_IF_ERROR(CheckMpiOptions(o, options));
  RankInputs in;
  REFIT_ASSIGN_OR_RETURN(in.setup, PrepareRun(o, world.size()));
  const auto t0 = std::chrono::steady_clock::now();
  REFIT_ASSIGN_OR_RETURN(
      in.plan,
      BuildRankReshardPlan(in.setup.spec, *in.setup.topo, world.rank()));
  in.plan_ms = std::chrono::duration<double, std::milli>(
                   std::chrono::steady_clock::now() - t0)
                   .count();
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
  const exec::MpiRefitOptions options = MpiOptions(o);
  Result<RankInputs> in = ReadRankInputs(o, options, world);
  const Status agreed = exec::AgreeOnInputs(
      world, in.ok() ? Result<std::string>(
                           exec::InputsRecord(in->setup.spec, *in->setup.topo))
                     : in.status());
  if (!agreed.ok()) return EndWithInputError(world, agreed);
  const RunSetup& s = in->setup;
  if (world.rank() == 0) LogSkippedTensors(s);
  auto report = exec::RunMpiRefit(world, s.spec, s.bound, *s.topo, in->plan,
                                  in->plan_ms, options);
  if (!report.ok()) AbortMpiJob(world, report.status());
  if (world.rank() == 0) {
    const RunResult result{
        in->plan.dst_tensors,
        report->bytes_remote,
        report->bytes_local,
        report->messages,
        report->plan_ms,
        report->job,
        o.baseline ? std::optional(report->alltoallv_ms_median) : std::nullopt};
    PrintRunTable(o, s, result);
    const Status st = WriteRunJson(o, s, result);
    if (!st.ok()) return Fail(st);
  }
  return report->job.wrong == 0 ? 0 : 1;
}

}  // namespace refit::cli
