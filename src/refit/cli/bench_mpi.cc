#include "refit/cli/bench_mpi.h"

#include <fmt/core.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>

#include "refit/bench/report.h"
#include "refit/checkpoint/synthetic.h"
#include "refit/cli/commands.h"
#include "refit/cli/run_mpi.h"
#include "refit/cli/run_report.h"
#include "refit/io/safetensors.h"
#include "refit/job/mpi/mpi_refit_job.h"
#include "refit/transport/mpi/mpi_world.h"

namespace refit::cli {

namespace {

using Clock = std::chrono::steady_clock;

// Who writes the scaled checkpoints, and where: the lowest rank of each host
// writes them into the work directory under a name every rank agrees on
// (rank 0's process id), so that hosts need not share a file system.
struct Placement {
  bool writer = false;
  std::string tag;
};

Result<Placement> Place(exec::MpiWorld& world) {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  REFIT_ASSIGN_OR_RETURN(
      std::vector<std::string> all,
      world.AllGather(std::to_string(::getpid()) + " " + host,
                      "exchanging host names"));
  auto host_of = [](const std::string& r) { return r.substr(r.find(' ') + 1); };
  Placement p;
  p.writer = true;
  for (int r = 0; r < world.rank(); ++r) {
    if (host_of(all[r]) == host_of(all[world.rank()])) p.writer = false;
  }
  p.tag = "mpi-" + all[0].substr(0, all[0].find(' '));
  return p;
}

// Removes the scaled checkpoint this rank wrote, once.
class WrittenDir {
 public:
  WrittenDir() = default;
  WrittenDir(const WrittenDir&) = delete;
  WrittenDir& operator=(const WrittenDir&) = delete;
  ~WrittenDir() { Remove(); }
  void Set(std::string dir) { dir_ = std::move(dir); }
  void Remove() {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }

 private:
  std::string dir_;
};

// One scenario as this rank sees it before the refit.
struct ScenarioInputs {
  bench::BenchRow row;  // rank 0: the full-size figures
  bench::ScaledScenario scaled;
  std::string dir;  // the scaled checkpoint
  std::unique_ptr<io::Checkpoint> ckpt;
  exec::BoundCheckpoint bound;
  ReshardPlan plan;  // BuildRankReshardPlan of this rank
  double plan_ms = 0;
};

std::string Name(const bench::Scenario& s) { return s.suite + "/" + s.name; }

// Scales the scenario, checks its world, plans it at full size (rank 0) and
// writes the scaled checkpoint (the host's writer).
Status Prepare(const bench::Scenario& s, const bench::BenchOptions& o,
               const exec::MpiWorld& world, const Placement& place,
               WrittenDir& written, ScenarioInputs& in) {
  if (o.schedule.chunk_bytes() == 0) {
    return InvalidArgument("--max-staging-bytes must be at least " +
                           std::to_string(2 * o.schedule.max_inflight));
  }
  REFIT_ASSIGN_OR_RETURN(std::string config,
                         bench::ReadScenarioConfig(s, o.configs_dir));
  REFIT_ASSIGN_OR_RETURN(in.scaled, bench::ScaleScenario(s, config, o.scale));
  const int ranks = in.scaled.topo->world_size;
  if (ranks != world.size()) {
    return InvalidArgument("scenario " + Name(s) + " has " +
                           std::to_string(ranks) +
                           " ranks but mpirun started " +
                           std::to_string(world.size()) + " processes");
  }
  if (world.rank() == 0) {
    bench::BenchOptions full = o;
    full.scale = 0;
    REFIT_ASSIGN_OR_RETURN(in.row, bench::RunScenario(s, full));
  }
  in.dir = bench::ScaledCheckpointDir(s, o.work_dir, place.tag);
  if (!place.writer) return OkStatus();
  written.Set(in.dir);
  return exec::WriteSyntheticCheckpoint(in.scaled.spec, in.scaled.config_json,
                                        in.dir, 1);
}

// Opens the scaled checkpoint (memory-mapped: this rank reads only the bytes
// of its own shards) and builds this rank's plan (with node fan-out when
// fanout_gpus_per_node > 0).
Status Load(int rank, int fanout_gpus_per_node, ScenarioInputs& in) {
  REFIT_ASSIGN_OR_RETURN(io::Checkpoint ckpt, io::Checkpoint::Open(in.dir));
  in.ckpt = std::make_unique<io::Checkpoint>(std::move(ckpt));
  REFIT_ASSIGN_OR_RETURN(in.bound,
                         exec::BindCheckpoint(in.scaled.spec, *in.ckpt));
  const auto t0 = Clock::now();
  PlanOptions plan_options;
  plan_options.fanout_gpus_per_node = fanout_gpus_per_node;
  REFIT_ASSIGN_OR_RETURN(
      in.plan, BuildRankReshardPlan(in.scaled.spec, *in.scaled.topo, rank,
                                    plan_options));
  in.plan_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  return OkStatus();
}

Result<std::string> Record(const Status& st, const ScenarioInputs& in) {
  if (!st.ok()) return st;
  return exec::InputsRecord(in.scaled.spec, *in.scaled.topo);
}

// Runs one scenario; returns the exit status when it ends this rank (an
// input error), else nullopt with `row` filled (rank 0).
std::optional<int> RunOne(exec::MpiWorld& world, const bench::Scenario& s,
                          const bench::BenchOptions& o, const Placement& place,
                          std::chrono::milliseconds timeout,
                          bench::BenchRow& row) {
  WrittenDir written;
  ScenarioInputs in;
  Status st = Prepare(s, o, world, place, written, in);
  // The writers are done once every rank agrees: then every rank may read.
  Status agreed = exec::AgreeOnInputs(world, Record(st, in));
  if (!agreed.ok()) return EndWithInputError(world, agreed);
  const int fanout = o.fanout ? o.cluster.gpus_per_node : 0;
  agreed =
      exec::AgreeOnInputs(world, Record(Load(world.rank(), fanout, in), in));
  if (!agreed.ok()) return EndWithInputError(world, agreed);
  exec::MpiRefitOptions options;
  options.iters = o.iters;
  options.baseline = true;
  options.copy.timeout = timeout;
  options.copy.schedule = o.schedule;
  options.fanout_gpus_per_node = fanout;
  auto report =
      exec::RunMpiRefit(world, in.scaled.spec, in.bound, *in.scaled.topo,
                        in.plan, in.plan_ms, options);
  if (!report.ok()) {
    written.Remove();
    AbortMpiJob(world,
                Status(report.status().code(), "scenario " + Name(s) + ": " +
                                                   report.status().message()));
  }
  row = std::move(in.row);
  row.scale = o.scale;
  row.wrong = static_cast<int64_t>(report->job.wrong);
  row.scaled_refit_ms = report->job.refit_ms_median;
  row.scaled_bytes =
      report->bytes_remote + report->bytes_local + report->bytes_forwarded;
  row.scaled_alltoallv_ms = report->alltoallv_ms_median;
  return std::nullopt;
}

}  // namespace

int RunMpiBench(const std::vector<bench::Scenario>& scenarios,
                const bench::BenchOptions& options,
                const std::string& json_path,
                std::chrono::milliseconds timeout) {
  auto world_or = exec::MpiWorld::Init(timeout);
  if (!world_or.ok()) return Fail(world_or.status());
  exec::MpiWorld& world = **world_or;
  Result<Placement> place = Place(world);
  if (!place.ok()) AbortMpiJob(world, place.status());
  std::vector<bench::BenchRow> rows;
  for (const bench::Scenario& s : scenarios) {
    bench::BenchRow row;
    if (auto exit = RunOne(world, s, options, *place, timeout, row)) {
      return *exit;
    }
    rows.push_back(std::move(row));
  }
  int wrong = 0;
  for (const bench::BenchRow& r : rows) wrong += r.wrong > 0;
  if (world.rank() == 0) {
    fmt::print("## refit bench: suite {} (transport mpi, {} processes)\n\n{}",
               scenarios.front().suite, world.size(),
               bench::MarkdownTable(rows, options));
    std::fflush(stdout);
    if (!json_path.empty()) {
      const Status st = WriteAtomically(json_path, bench::JsonReport(rows));
      if (!st.ok()) return Fail(st);
    }
  }
  return wrong == 0 ? 0 : 1;
}

}  // namespace refit::cli
