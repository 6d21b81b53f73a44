#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "refit/cli/commands.h"
#include "refit/core/layout.h"
#include "refit/core/plan_cache.h"
#include "refit/exec/refit_job.h"
#include "refit/io/safetensors.h"

namespace refit::cli {

namespace {

struct RunOptions {
  std::string checkpoint = REFIT_DEFAULT_CHECKPOINT;
  std::string src = "tp=2,ep=2";
  std::string dst = "tp=1,ep=4";
  int world = 0;
  int src_world = 0;
  int dst_world = 0;
  int iters = 5;
  bool baseline = false;
  std::string json_path;
  std::string save_dir;
  std::string dump_plan;
};

struct Setup {
  ModelSpec spec;
  std::unique_ptr<io::Checkpoint> ckpt;
  exec::BoundCheckpoint bound;
  std::optional<RefitTopology> topo;
};

Result<Layout> MakeLayout(const std::string& text, int world,
                          const ModelSpec& spec, const char* side) {
  Result<ParallelConfig> cfg = ParseParallelConfig(text);
  if (!cfg.ok()) {
    return InvalidArgument(std::string("--") + side + ": " +
                           cfg.status().message());
  }
  Result<Layout> layout = Layout::Create(*cfg, world, spec);
  if (!layout.ok()) {
    return InvalidArgument(std::string("--") + side + ": " +
                           layout.status().message());
  }
  return layout;
}

Result<RefitTopology> MakeRunTopology(const RunOptions& o,
                                      const ModelSpec& spec) {
  const bool split = o.src_world > 0 || o.dst_world > 0;
  if (split && (o.src_world <= 0 || o.dst_world <= 0 || o.world > 0)) {
    return InvalidArgument(
        "non-collocated runs need both --src-world and --dst-world (and no "
        "--world)");
  }
  const int sw = split ? o.src_world : (o.world > 0 ? o.world : 4);
  const int dw = split ? o.dst_world : sw;
  REFIT_ASSIGN_OR_RETURN(Layout src, MakeLayout(o.src, sw, spec, "src"));
  REFIT_ASSIGN_OR_RETURN(Layout dst, MakeLayout(o.dst, dw, spec, "dst"));
  return MakeTopology(src, dst, 0, split ? sw : 0, split ? sw + dw : sw);
}

Result<Setup> Prepare(const RunOptions& o) {
  Setup s;
  REFIT_ASSIGN_OR_RETURN(s.spec, LoadModelSpec(o.checkpoint));
  REFIT_ASSIGN_OR_RETURN(io::Checkpoint ckpt,
                         io::Checkpoint::Open(o.checkpoint));
  s.ckpt = std::make_unique<io::Checkpoint>(std::move(ckpt));
  REFIT_ASSIGN_OR_RETURN(s.bound, exec::BindCheckpoint(s.spec, *s.ckpt));
  for (const std::string& name : s.bound.skipped) {
    spdlog::info("not refit (MTP layer or tied copy): {}", name);
  }
  REFIT_ASSIGN_OR_RETURN(RefitTopology topo, MakeRunTopology(o, s.spec));
  s.topo = topo;
  return s;
}

// Writes `text` to `path` through a temporary file and a rename.
Status WriteAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    if (!out) return IoError("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return IoError("cannot write " + path);
  }
  return OkStatus();
}

std::string PlanJson(const ModelSpec& spec, const RefitTopology& topo,
                     const ReshardPlan& plan);

nlohmann::json ReportJson(const RunOptions& o, const Setup& s,
                          const ReshardPlan& plan, double plan_ms,
                          const exec::RefitJobReport& r) {
  const RefitTopology& t = *s.topo;
  nlohmann::json j = {
      {"model", s.spec.architecture},
      {"model_type", s.spec.model_type},
      {"checkpoint", o.checkpoint},
      {"src", t.src.config().ToString()},
      {"dst", t.dst.config().ToString()},
      {"mode", t.collocated() ? "collocated" : "non-collocated"},
      {"ranks", t.world_size},
      {"src_world", t.src.world_size()},
      {"dst_world", t.dst.world_size()},
      {"tensors", plan.dst_tensors},
      {"bytes_remote", plan.bytes_remote},
      {"bytes_local", plan.bytes_local},
      {"messages", plan.messages},
      {"plan_ms", plan_ms},
      {"iters", o.iters},
      {"refit_ms_min", r.refit_ms_min},
      {"refit_ms_median", r.refit_ms_median},
      {"gbps", r.gbps},
      {"wrong", r.wrong}};
  if (o.baseline) {
    j["memcpy_ms_median"] = r.memcpy_ms_median;
    j["memcpy_gbps"] = r.memcpy_gbps;
    j["refit_over_memcpy"] = r.gbps / r.memcpy_gbps;
  }
  return j;
}

void PrintTable(const RunOptions& o, const Setup& s, const ReshardPlan& plan,
                double plan_ms, const exec::RefitJobReport& r) {
  const RefitTopology& t = *s.topo;
  fmt::print("# refit run: model {} ({}), checkpoint {}\n", s.spec.architecture,
             s.spec.model_type, o.checkpoint);
  fmt::print(
      "# src {} on ranks [{}, {}) -> dst {} on ranks [{}, {}), {}, {} ranks\n",
      t.src.config().ToString(), t.src_rank_offset,
      t.src_rank_offset + t.src.world_size(), t.dst.config().ToString(),
      t.dst_rank_offset, t.dst_rank_offset + t.dst.world_size(),
      t.collocated() ? "collocated" : "non-collocated", t.world_size);
  fmt::print("# {:>8} {:>14} {:>14} {:>9} {:>9} {:>13} {:>13} {:>8} {:>7}\n",
             "tensors", "bytes_remote", "bytes_local", "messages", "plan_ms",
             "refit_ms_min", "refit_ms_med", "GB/s", "#wrong");
  fmt::print(
      "  {:>8} {:>14} {:>14} {:>9} {:>9.3f} {:>13.3f} {:>13.3f} {:>8.2f} "
      "{:>7}\n",
      plan.dst_tensors, plan.bytes_remote, plan.bytes_local, plan.messages,
      plan_ms, r.refit_ms_min, r.refit_ms_median, r.gbps, r.wrong);
  if (o.baseline) {
    fmt::print(
        "# baseline memcpy of the same destination bytes: {:.3f} ms, "
        "{:.2f} GB/s; refit/memcpy = {:.3f}\n",
        r.memcpy_ms_median, r.memcpy_gbps, r.gbps / r.memcpy_gbps);
  }
  for (const std::string& f : r.saved_files) fmt::print("# saved {}\n", f);
}

int RunRun(const RunOptions& o) {
  Result<Setup> setup = Prepare(o);
  if (!setup.ok()) return Fail(setup.status());
  Setup& s = *setup;
  PlanCache cache;
  const auto t0 = std::chrono::steady_clock::now();
  auto plan = cache.GetOrBuild(s.spec, *s.topo);
  const double plan_ms = std::chrono::duration<double, std::milli>(
                             std::chrono::steady_clock::now() - t0)
                             .count();
  if (!plan.ok()) return Fail(plan.status());
  if (!o.dump_plan.empty()) {
    Status st = WriteAtomically(o.dump_plan, PlanJson(s.spec, *s.topo, **plan));
    if (!st.ok()) return Fail(st);
  }
  exec::RefitJobOptions jo{o.iters, o.baseline, o.save_dir};
  auto report = exec::RunEmbeddedRefit(s.spec, s.bound, *s.topo, **plan, jo);
  if (!report.ok()) return Fail(report.status());
  PrintTable(o, s, **plan, plan_ms, *report);
  if (!o.json_path.empty()) {
    const auto j = ReportJson(o, s, **plan, plan_ms, *report);
    Status st = WriteAtomically(o.json_path, j.dump(2) + "\n");
    if (!st.ok()) return Fail(st);
  }
  return report->wrong == 0 ? 0 : 1;
}

// The plan as JSON for the PyTorch baseline (bench/torch_reshard.py): every
// shard's size and every piece, in byte coordinates of the local shards.
std::string PlanJson(const ModelSpec& spec, const RefitTopology& topo,
                     const ReshardPlan& plan) {
  nlohmann::json shards = nlohmann::json::array();
  auto add_side = [&](const Layout& l, int offset, const char* side) {
    for (int r = 0; r < l.world_size(); ++r) {
      for (size_t p = 0; p < spec.params.size(); ++p) {
        const ParamSpec& ps = spec.params[p];
        if (!HoldsParam(ps, p, l, r)) continue;
        const ShardGeometry g = ShardOf(ps, l, ShardCoord(ps, l, r));
        shards.push_back(
            {side, r + offset, p, g.LocalElements() * DTypeSize(ps.dtype)});
      }
    }
  };
  add_side(topo.src, topo.src_rank_offset, "src");
  add_side(topo.dst, topo.dst_rank_offset, "dst");
  nlohmann::json pieces = nlohmann::json::array();
  for (const TransferOp& op : plan.ops) {
    for (const Piece& p : op.pieces) {
      pieces.push_back({op.src_rank, p.src_param, op.dst_rank, p.dst_param,
                        p.src_offset, p.dst_offset, p.run_bytes, p.nruns,
                        p.src_stride, p.dst_stride});
    }
  }
  return nlohmann::json{{"shards", shards}, {"pieces", pieces}}.dump() + "\n";
}

}  // namespace

Command AddRunCommand(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "run",
      "Refit a checkpoint from one layout into another, bit-exact check");
  cmd->add_option("--checkpoint", o->checkpoint,
                  "HF checkpoint directory (config.json + safetensors)")
      ->capture_default_str();
  cmd->add_option("--src", o->src, "source layout, e.g. tp=2,pp=1,ep=2,etp=1")
      ->capture_default_str();
  cmd->add_option("--dst", o->dst, "destination layout")->capture_default_str();
  cmd->add_option("--world", o->world,
                  "collocated: ranks holding both models (default 4)")
      ->check(Positive());
  cmd->add_option("--src-world", o->src_world,
                  "non-collocated: source ranks (first)")
      ->check(Positive());
  cmd->add_option("--dst-world", o->dst_world,
                  "non-collocated: destination ranks (after the source ranks)")
      ->check(Positive());
  cmd->add_option("--iters", o->iters, "timed refits after one warm-up")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_flag("--baseline", o->baseline,
                "also time memcpy of the same destination bytes");
  cmd->add_option("--json", o->json_path, "write the result as JSON");
  cmd->add_option("--save", o->save_dir,
                  "write DIR/rank-NNNNN.safetensors per destination rank");
  cmd->add_option("--dump-plan", o->dump_plan,
                  "write the plan as JSON (for bench/torch_reshard.py)");
  return [o] { return RunRun(*o); };
}

}  // namespace refit::cli
