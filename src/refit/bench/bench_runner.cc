#include "refit/bench/bench_runner.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "refit/bench/scaled_config.h"
#include "refit/checkpoint/synthetic.h"
#include "refit/io/safetensors.h"
#include "refit/job/refit_job.h"

namespace refit::bench {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

Result<std::string> ReadScenarioConfig(const Scenario& s,
                                       const std::string& dir) {
  fs::path p = s.model;
  if (!fs::exists(p)) p = fs::path(dir) / s.model;
  if (fs::is_directory(p)) p /= "config.json";
  std::ifstream in(p);
  if (!in)
    return NotFound("scenario " + s.suite + "/" + s.name + ": cannot read " +
                    p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<RefitTopology> ScenarioTopology(const Scenario& s,
                                       const ModelSpec& spec) {
  const std::string where = "scenario " + s.suite + "/" + s.name + ": ";
  auto layout = [&](const std::string& text, int world) -> Result<Layout> {
    Result<ParallelConfig> c = ParseParallelConfig(text);
    if (!c.ok()) return InvalidArgument(where + c.status().message());
    Result<Layout> l = Layout::Create(*c, world, spec);
    if (!l.ok()) return InvalidArgument(where + l.status().message());
    return l;
  };
  REFIT_ASSIGN_OR_RETURN(Layout src, layout(s.src, s.src_world));
  REFIT_ASSIGN_OR_RETURN(Layout dst, layout(s.dst, s.dst_world));
  if (s.collocated) return MakeTopology(src, dst, 0, 0, s.src_world);
  return MakeTopology(src, dst, 0, s.src_world, s.src_world + s.dst_world);
}

namespace {

uint64_t PlanBytes(const ReshardPlan& plan,
                   const std::vector<RankPlan>& ranks) {
  uint64_t n = sizeof(plan) + plan.ops.capacity() * sizeof(TransferOp);
  for (const TransferOp& op : plan.ops)
    n += op.pieces.capacity() * sizeof(Piece);
  for (const RankPlan& r : ranks) {
    n += sizeof(r) +
         (r.sends.capacity() + r.recvs.capacity() + r.local_copies.capacity()) *
             sizeof(uint32_t);
  }
  return n;
}

// Builds of a plan whose median is reported: the first build of a process
// also pays for first-touching the plan's memory, later ones reuse it.
constexpr int kPlanBuilds = 5;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The median of kPlanBuilds builds of the whole plan plus every rank's op
// lists, in one thread.
Result<double> AllRanksPlanMs(const ModelSpec& spec, const RefitTopology& t) {
  std::vector<double> ms;
  for (int i = 0; i < kPlanBuilds; ++i) {
    const auto t0 = Clock::now();
    REFIT_ASSIGN_OR_RETURN(ReshardPlan plan, BuildReshardPlan(spec, t));
    std::vector<RankPlan> ranks;
    for (int r = 0; r < t.world_size; ++r) {
      ranks.push_back(ExtractRankPlan(plan, r));
    }
    ms.push_back(MsSince(t0));
  }
  return Median(std::move(ms));
}

// The slowest rank's BuildRankReshardPlan: every rank built once to find it,
// then the median of kPlanBuilds builds of that rank.
Result<double> MaxRankPlanMs(const ModelSpec& spec, const RefitTopology& t) {
  double worst = -1;
  int slowest = 0;
  for (int r = 0; r < t.world_size; ++r) {
    const auto t0 = Clock::now();
    REFIT_ASSIGN_OR_RETURN(ReshardPlan mine, BuildRankReshardPlan(spec, t, r));
    if (const double ms = MsSince(t0); ms > worst) worst = ms, slowest = r;
  }
  std::vector<double> ms;
  for (int i = 0; i < kPlanBuilds; ++i) {
    const auto t0 = Clock::now();
    REFIT_ASSIGN_OR_RETURN(ReshardPlan mine,
                           BuildRankReshardPlan(spec, t, slowest));
    ms.push_back(MsSince(t0));
  }
  return Median(std::move(ms));
}

// The lcm of every TP and ETP size of both sides: scaled widths stay
// multiples of it.
int SplitMultiple(const RefitTopology& t) {
  int m = 1;
  for (int n : {t.src.tp(), t.src.etp(), t.dst.tp(), t.dst.etp()}) {
    m = std::lcm(m, n);
  }
  return m;
}

// The destination format of `s`: its own, else the --dst-dtype flag's.
const std::string& DstDType(const Scenario& s, const BenchOptions& o) {
  return s.dst_dtype.empty() ? o.dst_dtype : s.dst_dtype;
}

// The smallest FP8 block extent of a scaled run: smaller blocks only add
// scales and per-block work (1 x 1 blocks hold 4 scale bytes per element).
// Larger ones stage more: at 1/64, 32-element blocks took Kimi-K2 row 11
// past 24 GB where 8-element ones stay at 13.8 GB.
constexpr int64_t kMinScaledBlock = 8;

// How long a rank of a scaled run waits while nothing moves. A scaled run
// puts up to 256 rank threads on the machine's cores, and every sender
// converts all its pieces before it posts the first one, so on a 2-core
// machine a minute can pass with no message moving (the 1/1024 Kimi-K2
// row 8 took 29 s alone with 8-element blocks).
constexpr std::chrono::minutes kScaledRunTimeout{10};

// The destination format of a run at 1/`scale` width: `dst_dtype`'s, with
// FP8 blocks scaled with the widths (128 / scale, at least kMinScaledBlock
// elements) so that TP cuts meet blocks about as they do at full width. A
// 128-element block wider than every scaled shard would make each receiver
// stage whole blocks up to `scale` times its shard, which no full-size
// refit does.
Result<PrecisionOptions> ScaledPrecision(const std::string& dst_dtype,
                                         int scale) {
  REFIT_ASSIGN_OR_RETURN(PrecisionOptions p, ScenarioPrecision(dst_dtype));
  quant::BlockShape& b = p.fp8.block;
  b.rows = std::max(std::min(b.rows, kMinScaledBlock), b.rows / scale);
  b.cols = std::max(std::min(b.cols, kMinScaledBlock), b.cols / scale);
  return p;
}

Status RunScaled(const Scenario& s, const std::string& config,
                 const BenchOptions& o, BenchRow& row) {
  REFIT_ASSIGN_OR_RETURN(ScaledScenario scaled,
                         ScaleScenario(s, config, o.scale));
  ModelSpec& spec = scaled.spec;
  const RefitTopology& topo = *scaled.topo;
  const std::string dir =
      ScaledCheckpointDir(s, o.work_dir, std::to_string(::getpid()));
  REFIT_RETURN_IF_ERROR(
      exec::WriteSyntheticCheckpoint(spec, scaled.config_json, dir, 1));
  Result<io::Checkpoint> ckpt = io::Checkpoint::Open(dir);
  Result<exec::RefitJobReport> report = ckpt.status();
  if (ckpt.ok()) {
    Result<exec::BoundCheckpoint> bound = exec::BindCheckpoint(spec, *ckpt);
    Result<PrecisionOptions> precision =
        ScaledPrecision(DstDType(s, o), o.scale);
    Result<FormatPlan> formats = precision.ok()
                                     ? ResolveFormats(spec, topo, *precision)
                                     : precision.status();
    exec::RefitJobOptions jo;
    jo.fanout_gpus_per_node = o.fanout ? o.cluster.gpus_per_node : 0;
    jo.iters = o.iters;
    jo.timeout = kScaledRunTimeout;
    // The scaled run checks every byte against the checkpoint itself.
    jo.verify = VerifyMode::kNone;
    jo.memory = o.device == "cuda" ? MemoryKind::kCuda : MemoryKind::kHost;
    Result<ReshardPlan> plan = formats.status();
    if (formats.ok()) {
      PlanOptions po = formats->plan_options();
      po.fanout_gpus_per_node = jo.fanout_gpus_per_node;
      plan = BuildReshardPlan(spec, topo, po);
      jo.formats = &*formats;
      jo.precision = *precision;
    }
    if (!bound.ok())
      report = bound.status();
    else if (!plan.ok())
      report = plan.status();
    else
      report = exec::RunEmbeddedRefit(spec, *bound, topo, *plan, jo);
    if (plan.ok()) {
      row.scaled_bytes =
          plan->bytes_local + plan->bytes_remote + plan->bytes_forwarded;
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (!report.ok()) return report.status();
  row.wrong = static_cast<int64_t>(report->wrong);
  row.scaled_refit_ms = report->refit_ms_median;
  row.scale = o.scale;
  return OkStatus();
}

// The wire bytes of the scenario refit into `dst_dtype` at full size.
Status MeasureWire(const ModelSpec& spec, const RefitTopology& topo,
                   const ReshardPlan& plan, const std::string& dst_dtype,
                   BenchRow& row) {
  REFIT_ASSIGN_OR_RETURN(FormatPlan formats,
                         ScenarioFormats(spec, topo, dst_dtype));
  row.quantised = formats.quantised;
  row.send_side = formats.send_side;
  const PlanOptions po = formats.plan_options();
  if (po.dst_block.empty()) {
    row.wire_bytes = PlanWireBytes(spec, formats, plan);
    row.wire_source_bytes = plan.bytes_remote;
    return OkStatus();
  }
  REFIT_ASSIGN_OR_RETURN(ReshardPlan widened, BuildReshardPlan(spec, topo, po));
  row.wire_bytes = PlanWireBytes(spec, formats, widened);
  row.wire_source_bytes = widened.bytes_remote;
  return OkStatus();
}

// The scenario planned with node fan-out on o.cluster's nodes: the plain
// plan's options plus fanout_gpus_per_node, with the parameters `formats`
// quantises on receipt kept out (as the refit keeps them).
Result<FanoutFigures> MeasureFanout(const ModelSpec& spec,
                                    const RefitTopology& topo,
                                    const FormatPlan& formats,
                                    const BenchOptions& o) {
  PlanOptions po;
  po.fanout_gpus_per_node = o.cluster.gpus_per_node;
  po.no_fanout = formats.plan_options().no_fanout;
  REFIT_ASSIGN_OR_RETURN(ReshardPlan plan, BuildReshardPlan(spec, topo, po));
  FanoutFigures f;
  f.traffic = ComputeTraffic(plan, o.cluster.gpus_per_node);
  f.bytes_forwarded = plan.bytes_forwarded;
  f.schedule = ModelPhasedSchedule(plan, o.cluster, o.schedule);
  return f;
}

}  // namespace

Result<PrecisionOptions> ScenarioPrecision(const std::string& dst_dtype) {
  PrecisionOptions p;
  if (dst_dtype.empty()) return p;
  Status st = ApplyDstDType(dst_dtype, p);
  if (!st.ok()) return Status(st.code(), "--dst-dtype: " + st.message());
  return p;
}

Result<FormatPlan> ScenarioFormats(const ModelSpec& spec,
                                   const RefitTopology& topo,
                                   const std::string& dst_dtype) {
  REFIT_ASSIGN_OR_RETURN(PrecisionOptions p, ScenarioPrecision(dst_dtype));
  return ResolveFormats(spec, topo, p);
}

Result<ScaledScenario> ScaleScenario(const Scenario& s,
                                     const std::string& config_json,
                                     int scale) {
  REFIT_ASSIGN_OR_RETURN(ModelSpec full, ModelSpecFromConfigJson(config_json));
  REFIT_ASSIGN_OR_RETURN(RefitTopology full_topo, ScenarioTopology(s, full));
  ScaledScenario out;
  REFIT_ASSIGN_OR_RETURN(
      out.config_json,
      ScaleConfigJson(config_json, scale, SplitMultiple(full_topo)));
  REFIT_ASSIGN_OR_RETURN(out.spec, ModelSpecFromConfigJson(out.config_json));
  REFIT_ASSIGN_OR_RETURN(out.topo, ScenarioTopology(s, out.spec));
  return out;
}

std::string ScaledCheckpointDir(const Scenario& s, const std::string& work_dir,
                                const std::string& tag) {
  return (fs::path(work_dir) / ("refit-bench-" + s.suite + "-" + tag)).string();
}

Result<BenchRow> RunScenario(const Scenario& s, const BenchOptions& o) {
  REFIT_ASSIGN_OR_RETURN(std::string config,
                         ReadScenarioConfig(s, o.configs_dir));
  REFIT_ASSIGN_OR_RETURN(ModelSpec spec, ModelSpecFromConfigJson(config));
  REFIT_ASSIGN_OR_RETURN(RefitTopology topo, ScenarioTopology(s, spec));
  BenchRow row;
  row.scenario = s;
  row.architecture = spec.architecture;
  row.ranks = topo.world_size;
  REFIT_ASSIGN_OR_RETURN(ReshardPlan plan, BuildReshardPlan(spec, topo));
  std::vector<RankPlan> ranks;
  for (int r = 0; r < topo.world_size; ++r) {
    ranks.push_back(ExtractRankPlan(plan, r));
  }
  if (o.time_plans) {
    REFIT_ASSIGN_OR_RETURN(row.plan_ms_all_ranks, AllRanksPlanMs(spec, topo));
    REFIT_ASSIGN_OR_RETURN(row.plan_ms_max_rank, MaxRankPlanMs(spec, topo));
  }
  row.plan_mem_bytes = PlanBytes(plan, ranks);
  for (int r = 0; r < topo.dst.world_size(); ++r) {
    uint64_t bytes = 0;
    for (uint32_t i : ranks[r + topo.dst_rank_offset].recvs) {
      bytes += plan.ops[i].bytes;
    }
    row.recv_bytes_per_dst_rank.push_back(bytes);
  }
  row.traffic = ComputeTraffic(plan, o.cluster.gpus_per_node);
  row.schedule = BuildSchedule(plan, o.cluster, o.schedule).model;
  const std::string& dst_dtype = DstDType(s, o);
  if (!dst_dtype.empty()) {
    REFIT_RETURN_IF_ERROR(MeasureWire(spec, topo, plan, dst_dtype, row));
  }
  REFIT_ASSIGN_OR_RETURN(FormatPlan formats,
                         ScenarioFormats(spec, topo, dst_dtype));
  row.memory = ComputeScenarioMemory(spec, formats, topo,
                                     row.schedule.staging_bytes_max);
  row.fits = row.memory.Fits(o.gpu);
  if (o.fanout) {
    REFIT_ASSIGN_OR_RETURN(row.fanout, MeasureFanout(spec, topo, formats, o));
  }
  if (o.scale > 0) REFIT_RETURN_IF_ERROR(RunScaled(s, config, o, row));
  return row;
}

}  // namespace refit::bench
