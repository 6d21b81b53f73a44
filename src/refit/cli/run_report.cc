#include "refit/cli/run_report.h"

#include <fmt/core.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

namespace refit::cli {

void PrintRunTable(const RunOptions& o, const RunSetup& s, const RunResult& r) {
  const RefitTopology& t = *s.topo;
  const exec::RefitJobReport& j = r.job;
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
      r.tensors, r.bytes_remote, r.bytes_local, r.messages, r.plan_ms,
      j.refit_ms_min, j.refit_ms_median, j.gbps, j.wrong);
  const FormatPlan& f = s.formats;
  if (f.any_conversion() || f.harmonised > 0) {
    fmt::print(
        "# formats: {} casts, {} quantised, {} converted on the sender, {} "
        "buffers harmonised, {} kept as block FP8; wire bytes {} of {} source "
        "bytes ({:.3f}); transform staging {} bytes on the busiest rank\n",
        f.casts, f.quantised, f.send_side, f.harmonised, f.kept, r.bytes_wire,
        r.bytes_remote,
        r.bytes_remote ? double(r.bytes_wire) / r.bytes_remote : 1.0,
        j.transform_staging_bytes);
  }
  if (r.alltoallv_ms_median) {
    fmt::print(
        "# baseline MPI_Alltoallv of the same per-pair bytes: {:.3f} ms; "
        "refit/alltoallv time = {:.3f}\n",
        *r.alltoallv_ms_median, j.refit_ms_median / *r.alltoallv_ms_median);
  } else if (o.baseline) {
    fmt::print(
        "# baseline memcpy of the same destination bytes: {:.3f} ms, "
        "{:.2f} GB/s; refit/memcpy = {:.3f}\n",
        j.memcpy_ms_median, j.memcpy_gbps, j.gbps / j.memcpy_gbps);
  }
  if (r.bytes_forwarded > 0) {
    fmt::print(
        "# node fan-out ({} GPUs a node): {} bytes forwarded inside nodes "
        "after the remote bytes\n",
        o.fanout_gpus_per_node, r.bytes_forwarded);
  }
  if (o.checksummed()) {
    fmt::print(
        "# verify checksum: each of the {} messages of every refit carried an "
        "xxh3-64 of its bytes, checked by its receiver\n",
        r.messages);
  }
  if (o.atomic && j.shadow_bytes == 0) {
    // Under mpirun the job does not gather the ranks' shadow figures.
    fmt::print(
        "# atomic: every refit wrote a shadow copy, published after every "
        "rank succeeded\n");
  } else if (o.atomic) {
    fmt::print(
        "# atomic: every refit wrote a shadow copy ({} bytes over all ranks), "
        "published after every rank succeeded; slowest rank, median: fill "
        "{:.3f} ms, publish {:.3f} ms\n",
        j.shadow_bytes, j.shadow_ms_median, j.publish_ms_median);
  }
  PrintAlsoDestinations(s, j);
  for (const std::string& f : j.saved_files) fmt::print("# saved {}\n", f);
}

void PrintAlsoDestinations(const RunSetup& s, const exec::RefitJobReport& j) {
  if (s.also.empty()) return;
  for (size_t d = 0; d < s.also.size(); ++d) {
    const RefitTopology& t = s.also[d].topo;
    fmt::print("# also dst {} on ranks [{}, {}): {} wrong\n",
               t.dst.config().ToString(), t.dst_rank_offset,
               t.dst_rank_offset + t.dst.world_size(),
               j.wrong_per_destination.at(d + 1));
  }
  fmt::print(
      "# one pass into {} destinations (#wrong and GB/s count them all): "
      "{} destination bytes per refit, {} of them copied on the ranks from "
      "another destination's identical shard\n",
      s.also.size() + 1, j.dst_bytes, j.bytes_copied);
}

void PrintEngineCheck(const RefitTopology& t, const exec::RefitJobReport& j,
                      const std::string& why_not) {
  const LayoutFamily family = t.dst.family();
  if (family == LayoutFamily::kMegatron) return;
  if (j.checked_tensors == 0) {
    fmt::print("# {} tensors not checked by name: {}\n",
               LayoutFamilyName(family), why_not);
    return;
  }
  fmt::print(
      "# engine reference ({}, built from the HF tensors by the engine's "
      "loading rules, not by the planner): {} tensors on {} ranks, {} "
      "wrong\n",
      LayoutFamilyName(family), j.checked_tensors, t.dst.world_size(),
      j.checked_wrong);
}

Status WriteRunJson(const RunOptions& o, const RunSetup& s,
                    const RunResult& r) {
  if (o.json_path.empty()) return OkStatus();
  const RefitTopology& t = *s.topo;
  const exec::RefitJobReport& j = r.job;
  nlohmann::json json = {
      {"model", s.spec.architecture},
      {"model_type", s.spec.model_type},
      {"checkpoint", o.checkpoint},
      {"src", t.src.config().ToString()},
      {"dst", t.dst.config().ToString()},
      {"mode", t.collocated() ? "collocated" : "non-collocated"},
      {"ranks", t.world_size},
      {"src_world", t.src.world_size()},
      {"dst_world", t.dst.world_size()},
      {"tensors", r.tensors},
      {"bytes_remote", r.bytes_remote},
      {"bytes_local", r.bytes_local},
      {"messages", r.messages},
      {"plan_ms", r.plan_ms},
      {"iters", o.iters},
      {"refit_ms_min", j.refit_ms_min},
      {"refit_ms_median", j.refit_ms_median},
      {"gbps", j.gbps},
      {"wrong", j.wrong},
      {"dst_family", LayoutFamilyName(t.dst.family())},
      {"engine_checked_tensors", j.checked_tensors},
      {"engine_wrong", j.checked_wrong},
      {"dst_dtype", o.dst_dtype.empty() ? "source" : o.dst_dtype},
      {"casts", s.formats.casts},
      {"quantised", s.formats.quantised},
      {"send_side", s.formats.send_side},
      {"harmonised", s.formats.harmonised},
      {"kept_fp8", s.formats.kept},
      {"transform_staging_bytes", j.transform_staging_bytes},
      {"bytes_wire", r.bytes_wire ? r.bytes_wire : r.bytes_remote},
      {"fanout_gpus_per_node", o.fanout_gpus_per_node},
      {"verify", o.checksummed() ? "checksum" : "none"},
      {"atomic", o.atomic},
      {"shadow_bytes", j.shadow_bytes},
      {"shadow_ms_median", j.shadow_ms_median},
      {"publish_ms_median", j.publish_ms_median},
      {"bytes_forwarded", r.bytes_forwarded}};
  if (!s.also.empty()) {
    nlohmann::json also = nlohmann::json::array();
    for (size_t d = 0; d < s.also.size(); ++d) {
      const RefitTopology& a = s.also[d].topo;
      also.push_back({{"dst", a.dst.config().ToString()},
                      {"dst_rank_offset", a.dst_rank_offset},
                      {"dst_world", a.dst.world_size()},
                      {"wrong", j.wrong_per_destination.at(d + 1)}});
    }
    json["also_dst"] = std::move(also);
    json["dst_bytes"] = j.dst_bytes;
    json["bytes_copied"] = j.bytes_copied;
  }
  if (r.alltoallv_ms_median) {
    json["alltoallv_ms_median"] = *r.alltoallv_ms_median;
    json["refit_over_alltoallv"] = j.refit_ms_median / *r.alltoallv_ms_median;
  } else if (o.baseline) {
    json["memcpy_ms_median"] = j.memcpy_ms_median;
    json["memcpy_gbps"] = j.memcpy_gbps;
    json["refit_over_memcpy"] = j.gbps / j.memcpy_gbps;
  }
  return WriteAtomically(o.json_path, json.dump(2) + "\n");
}

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

}  // namespace refit::cli
