#include "refit/bench/report.h"

#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "refit/bench/recommend.h"

namespace refit::bench {

namespace {

double GB(uint64_t b) { return b / 1e9; }
double MiB(uint64_t b) { return b / 1048576.0; }

std::string Mode(const Scenario& s) {
  return s.collocated ? "collocated" : "non-collocated";
}

// "tp=8 -> tp=4", with the destination format when the scenario has one.
std::string Layouts(const Scenario& s) {
  return s.src + " -> " + s.dst +
         (s.dst_dtype.empty() ? "" : " (" + s.dst_dtype + ")");
}

// True when some row was measured on the wire in a destination format.
bool AnyWire(const std::vector<BenchRow>& rows) {
  for (const BenchRow& r : rows) {
    if (r.wire_source_bytes > 0) return true;
  }
  return false;
}

double RefitOverAlltoallv(const BenchRow& r) {
  return r.scaled_alltoallv_ms > 0 ? r.scaled_refit_ms / r.scaled_alltoallv_ms
                                   : 0;
}

// Plain modeled time / fan-out modeled time (> 1: fan-out is faster); 1 when
// neither moves anything.
double FanoutSpeedup(const BenchRow& r) {
  if (!r.fanout || r.fanout->schedule.makespan_ms <= 0) return 1.0;
  return r.schedule.makespan_ms / r.fanout->schedule.makespan_ms;
}

// Bytes an engine's loader reads and writes again on the busiest destination
// GPU when it re-packs received tensors into its own (BenchOptions::
// engine_repack), and their time at HBM bandwidth, ms.
uint64_t RepackBytes(const BenchRow& r) {
  return 2 * r.memory.dst_weight_bytes;
}
double RepackMs(const BenchRow& r, const ClusterModel& c) {
  return RepackBytes(r) / (c.hbm_gbps * 1e6);
}

// The engine re-pack columns of row `r` (--engine-repack).
std::string RepackCells(const BenchRow& r, const ClusterModel& c) {
  const double ms = RepackMs(r, c);
  return fmt::format(
      " {:.1f} | {:.1f} | {:.2f} |", GB(RepackBytes(r)), ms,
      r.schedule.makespan_ms > 0 ? ms / r.schedule.makespan_ms : 0.0);
}

// The fan-out columns of row `r` (--fanout node): "-" where it has none.
std::string FanoutCells(const BenchRow& r) {
  if (!r.fanout) return " - | - | - | - | - |";
  const FanoutFigures& f = *r.fanout;
  return fmt::format(" {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.2f} |",
                     GB(f.traffic.internode_bytes), GB(f.bytes_forwarded),
                     f.schedule.t_lb_ms, f.schedule.makespan_ms,
                     FanoutSpeedup(r));
}

// The "fanout" object of a row's JSON: the fan-out plan's traffic (both
// phases), forwarded bytes, two-phase schedule and the speed-up.
nlohmann::json FanoutJson(const BenchRow& r) {
  const FanoutFigures& f = *r.fanout;
  const TrafficStats& t = f.traffic;
  return {{"total_bytes", t.total_bytes},
          {"moved_bytes", t.moved_bytes},
          {"internode_bytes", t.internode_bytes},
          {"forwarded_bytes", f.bytes_forwarded},
          {"max_send_bytes", t.max_send_bytes},
          {"max_recv_bytes", t.max_recv_bytes},
          {"messages", t.messages},
          {"max_rank_messages", t.max_rank_messages},
          {"pairs", t.pairs},
          {"t_lb_ms", f.schedule.t_lb_ms},
          {"makespan_ms", f.schedule.makespan_ms},
          {"efficiency", f.schedule.efficiency},
          {"chunks", f.schedule.chunks},
          {"staging_bytes_max", f.schedule.staging_bytes_max},
          {"speedup", FanoutSpeedup(r)}};
}

}  // namespace

std::string MarkdownTable(const std::vector<BenchRow>& rows,
                          const BenchOptions& o) {
  const bool scaled = o.scale > 0;
  const bool mpi = scaled && o.transport == "mpi";
  std::string out = fmt::format(
      "cluster: {} GPUs/node, NVLink {} GB/s, network {} GB/s per GPU per "
      "direction, {} us/message; staging bound {} MiB, {} in flight; GPU "
      "{} GB HBM, weights and staging may use {:.0f} % of it\n\n",
      o.cluster.gpus_per_node, o.cluster.nvlink_gbps, o.cluster.network_gbps,
      o.cluster.latency_us, MiB(o.schedule.max_staging_bytes),
      o.schedule.max_inflight, o.gpu.hbm_gb, o.gpu.headroom * 100);
  if (o.fanout) {
    out += fmt::format(
        "fan-out columns: the same scenario planned with node fan-out ({} "
        "GPUs/node): network bytes, then forwards inside each node once "
        "every receive has landed (modeled ms and T_LB: the two phases "
        "added); speed-up = makespan ms / fan-out modeled ms\n\n",
        o.cluster.gpus_per_node);
  }
  if (o.engine_repack) {
    out += fmt::format(
        "re-pack columns: what an engine's weight loader does again when it "
        "receives Megatron or HF tensors instead of its own (narrow, "
        "concatenate and copy every byte into its parameters: vLLM "
        "load_weights): bytes read and written on the busiest destination "
        "GPU, their time at {:.0f} GB/s of HBM (a lower bound: Python "
        "loaders run far below it) and that time over the modeled refit "
        "makespan. Refit's engine families write the engine's tensors "
        "directly and skip this pass.\n\n",
        o.cluster.hbm_gbps);
  }
  out +=
      "| scenario | model | src -> dst | mode | ranks | total GB | moved GB | "
      "internode GB | max send GB | max recv GB | messages (max/rank) | pairs "
      "| "
      "plan ms: all ranks in 1 thread / slowest rank alone | plan MiB | T_LB "
      "ms | makespan ms | efficiency "
      "| "
      "staging MiB | src GB/GPU | dst GB/GPU | max GB/GPU | fits |";
  const bool wire = !o.dst_dtype.empty() || AnyWire(rows);
  out += wire ? fmt::format(" {}quantised (sender) | wire GB | wire/source |",
                            o.dst_dtype.empty() ? "" : o.dst_dtype + " ")
              : "";
  out += o.fanout ? " fan-out internode GB | fan-out forwarded GB | fan-out "
                    "T_LB ms | fan-out modeled ms | speed-up |"
                  : "";
  out += o.engine_repack
             ? " re-pack saved GB/GPU | re-pack saved ms | re-pack/makespan |"
             : "";
  out += scaled ? " scale | wrong |" : "";
  out += mpi ? " refit ms | Alltoallv ms | refit/Alltoallv |\n" : "\n";
  out +=
      "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
      "---:|---:|---:|---:|---:|---:|---:|---|";
  out += wire ? "---:|---:|---:|" : "";
  out += o.fanout ? "---:|---:|---:|---:|---:|" : "";
  out += o.engine_repack ? "---:|---:|---:|" : "";
  out += scaled ? "---:|---:|" : "";
  out += mpi ? "---:|---:|---:|\n" : "\n";
  for (const BenchRow& r : rows) {
    const TrafficStats& t = r.traffic;
    out += fmt::format(
        "| {}/{} | {} | {} | {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.2f} "
        "| {:.2f} | {} ({}) | {} | {:.1f} / {:.1f} | {:.1f} | {:.1f} | {:.1f} "
        "| "
        "{:.3f} | {:.0f} | {:.1f} | {:.1f} | {:.1f} | {} |",
        r.scenario.suite, r.scenario.name, r.scenario.model,
        Layouts(r.scenario), Mode(r.scenario), r.ranks, GB(t.total_bytes),
        GB(t.moved_bytes), GB(t.internode_bytes), GB(t.max_send_bytes),
        GB(t.max_recv_bytes), t.messages, t.max_rank_messages, t.pairs,
        r.plan_ms_all_ranks, r.plan_ms_max_rank, MiB(r.plan_mem_bytes),
        r.schedule.t_lb_ms, r.schedule.makespan_ms, r.schedule.efficiency,
        MiB(r.schedule.staging_bytes_max), GB(r.memory.src_weight_bytes),
        GB(r.memory.dst_weight_bytes), GB(r.memory.max_gpu_bytes()),
        r.fits ? "yes" : "**no**");
    out += wire ? fmt::format(" {} ({}) | {:.1f} | {:.3f} |", r.quantised,
                              r.send_side, GB(r.wire_bytes),
                              r.wire_source_bytes
                                  ? double(r.wire_bytes) / r.wire_source_bytes
                                  : 1.0)
                : "";
    out += o.fanout ? FanoutCells(r) : "";
    out += o.engine_repack ? RepackCells(r, o.cluster) : "";
    out += scaled ? fmt::format(" 1/{} | {} |", r.scale, r.wrong) : "";
    out += mpi ? fmt::format(" {:.2f} | {:.2f} | {:.2f} |\n", r.scaled_refit_ms,
                             r.scaled_alltoallv_ms, RefitOverAlltoallv(r))
               : "\n";
  }
  for (const BenchRow& r : rows) {
    if (!r.fits) {
      out += fmt::format(
          "\nnote {}/{}: does not fit: {:.1f} GB on the most loaded GPU "
          "({}) > {:.1f} GB ({:.0f} % of {} GB); planned anyway",
          r.scenario.suite, r.scenario.name, GB(r.memory.max_gpu_bytes()),
          r.memory.collocated ? "source + destination + staging"
                              : "weights + staging",
          o.gpu.budget_bytes() / 1e9, o.gpu.headroom * 100, o.gpu.hbm_gb);
    }
    if (r.memory.dst_recv_staging_bytes > 0) {
      out += fmt::format(
          "\nnote {}/{}: each inference GPU also holds up to {:.1f} GB of "
          "receive staging for the tensors it quantises itself (whole "
          "blocks, in the source dtype, kept with the plan)",
          r.scenario.suite, r.scenario.name,
          GB(r.memory.dst_recv_staging_bytes));
    }
    if (!r.scenario.note.empty()) {
      out += fmt::format("\nnote {}/{}: {}", r.scenario.suite, r.scenario.name,
                         r.scenario.note);
    }
  }
  return out + "\n";
}

namespace {

nlohmann::json RowsJson(const std::vector<BenchRow>& rows) {
  nlohmann::json arr = nlohmann::json::array();
  for (const BenchRow& r : rows) {
    const TrafficStats& t = r.traffic;
    nlohmann::json j = {
        {"suite", r.scenario.suite},
        {"scenario", r.scenario.name},
        {"model", r.scenario.model},
        {"architecture", r.architecture},
        {"src", r.scenario.src},
        {"dst", r.scenario.dst},
        {"mode", Mode(r.scenario)},
        {"ranks", r.ranks},
        {"src_world", r.scenario.src_world},
        {"dst_world", r.scenario.dst_world},
        {"total_bytes", t.total_bytes},
        {"moved_bytes", t.moved_bytes},
        {"internode_bytes", t.internode_bytes},
        {"max_send_bytes", t.max_send_bytes},
        {"max_recv_bytes", t.max_recv_bytes},
        {"messages", t.messages},
        {"max_rank_messages", t.max_rank_messages},
        {"pairs", t.pairs},
        {"plan_ms_all_ranks", r.plan_ms_all_ranks},
        {"plan_ms_max_rank", r.plan_ms_max_rank},
        {"plan_mem_bytes", r.plan_mem_bytes},
        {"t_lb_ms", r.schedule.t_lb_ms},
        {"makespan_ms", r.schedule.makespan_ms},
        {"efficiency", r.schedule.efficiency},
        {"chunks", r.schedule.chunks},
        {"staging_bytes_max", r.schedule.staging_bytes_max},
        {"src_gpu_weight_bytes", r.memory.src_weight_bytes},
        {"dst_gpu_weight_bytes", r.memory.dst_weight_bytes},
        {"dst_recv_staging_bytes", r.memory.dst_recv_staging_bytes},
        {"max_gpu_bytes", r.memory.max_gpu_bytes()},
        {"fits", r.fits},
        {"note", r.scenario.note},
        {"dst_dtype", r.scenario.dst_dtype}};
    if (r.wire_source_bytes > 0) {
      j["quantised"] = r.quantised;
      j["send_side"] = r.send_side;
      j["wire_bytes"] = r.wire_bytes;
      j["wire_source_bytes"] = r.wire_source_bytes;
    }
    if (r.scale > 0) {
      j["scale"] = r.scale;
      j["wrong"] = r.wrong;
      j["scaled_refit_ms"] = r.scaled_refit_ms;
      j["scaled_bytes"] = r.scaled_bytes;
    }
    if (r.scaled_alltoallv_ms > 0) {
      j["transport"] = "mpi";
      j["scaled_alltoallv_ms"] = r.scaled_alltoallv_ms;
      j["scaled_refit_over_alltoallv"] = RefitOverAlltoallv(r);
    }
    if (r.fanout) j["fanout"] = FanoutJson(r);
    j["recv_bytes_per_dst_rank"] = r.recv_bytes_per_dst_rank;
    j["engine_repack_bytes"] = RepackBytes(r);
    arr.push_back(std::move(j));
  }
  return arr;
}

}  // namespace

std::string JsonReport(const std::vector<BenchRow>& rows) {
  return RowsJson(rows).dump(2) + "\n";
}

std::string MarkdownReport(const std::vector<BenchRow>& rows,
                           const BenchOptions& o) {
  std::string out = "# refit bench: per-model configuration report\n\n";
  out += MarkdownTable(rows, o);
  out += "\n## Recommendation per model\n\n";
  for (const Recommendation& r : Recommend(rows, o.gpu)) {
    out += fmt::format("- **{}**: {}: {}\n", r.model,
                       r.scenario.empty() ? "none" : r.scenario, r.why);
  }
  return out;
}

std::string JsonFullReport(const std::vector<BenchRow>& rows,
                           const BenchOptions& o) {
  nlohmann::json recs = nlohmann::json::array();
  for (const Recommendation& r : Recommend(rows, o.gpu)) {
    recs.push_back(
        {{"model", r.model}, {"scenario", r.scenario}, {"why", r.why}});
  }
  const nlohmann::json j = {{"gpu",
                             {{"hbm_gb", o.gpu.hbm_gb},
                              {"headroom", o.gpu.headroom},
                              {"budget_bytes", o.gpu.budget_bytes()}}},
                            {"hbm_gbps", o.cluster.hbm_gbps},
                            {"rows", RowsJson(rows)},
                            {"recommendations", std::move(recs)}};
  return j.dump(2) + "\n";
}

}  // namespace refit::bench
