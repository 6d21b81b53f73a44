#include "refit/cli/run_setup.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "refit/cli/commands.h"
#include "refit/core/layout.h"

namespace refit::cli {

namespace {

Result<Layout> MakeLayout(const std::string& text, int world,
                          const ModelSpec& spec, const char* side,
                          const std::string& family = "") {
  Result<ParallelConfig> cfg = ParseParallelConfig(text);
  if (!cfg.ok()) {
    return InvalidArgument(std::string("--") + side + ": " +
                           cfg.status().message());
  }
  if (!family.empty()) {
    Result<LayoutFamily> f = ParseLayoutFamily(family);
    if (!f.ok()) {
      return InvalidArgument(std::string("--") + side +
                             "-family: " + f.status().message());
    }
    cfg->family = *f;
  }
  Result<Layout> layout = Layout::Create(*cfg, world, spec);
  if (!layout.ok()) {
    return InvalidArgument(std::string("--") + side + ": " +
                           layout.status().message());
  }
  return layout;
}

Result<RefitTopology> MakeRunTopology(const RunOptions& o,
                                      const ModelSpec& spec, int processes) {
  const bool split = o.src_world > 0 || o.dst_world > 0;
  if (split && (o.src_world <= 0 || o.dst_world <= 0 || o.world > 0)) {
    return InvalidArgument(
        "non-collocated runs need both --src-world and --dst-world (and no "
        "--world)");
  }
  const int default_world = processes > 0 ? processes : 4;
  const int sw = split ? o.src_world : (o.world > 0 ? o.world : default_world);
  const int dw = split ? o.dst_world : sw;
  const int ranks = split ? sw + dw : sw;
  if (processes > 0 && ranks != processes) {
    return InvalidArgument("mpirun started " + std::to_string(processes) +
                           " processes but the refit needs " +
                           std::to_string(ranks) + " ranks (" +
                           (split ? "--src-world " + std::to_string(sw) +
                                        " + --dst-world " + std::to_string(dw)
                                  : "--world " + std::to_string(sw)) +
                           "): start one process per rank");
  }
  REFIT_ASSIGN_OR_RETURN(Layout src, MakeLayout(o.src, sw, spec, "src"));
  REFIT_ASSIGN_OR_RETURN(Layout dst,
                         MakeLayout(o.dst, dw, spec, "dst", o.dst_family));
  return MakeTopology(src, dst, 0, split ? sw : 0, ranks);
}

Result<exec::Fp8Source> ParseFp8Source(const std::string& value) {
  if (value == "dequantise") return exec::Fp8Source::kDequantise;
  if (value == "keep") return exec::Fp8Source::kKeep;
  return InvalidArgument("--fp8-source: unknown value '" + value +
                         "' (keep or dequantise)");
}

}  // namespace

Result<PrecisionOptions> MakePrecisionOptions(const RunOptions& o) {
  // Errors name the flag: "fp8_scale" -> "--fp8-scale".
  return MakePrecisionOptions(o, [](std::string_view field) {
    std::string flag = "--" + std::string(field);
    std::replace(flag.begin(), flag.end(), '_', '-');
    return flag;
  });
}

Result<RunSetup> PrepareRun(const RunOptions& o, int processes) {
  RunSetup s;
  REFIT_ASSIGN_OR_RETURN(const exec::Fp8Source fp8,
                         ParseFp8Source(o.fp8_source));
  REFIT_ASSIGN_OR_RETURN(s.spec,
                         LoadModelSpec(o.checkpoint, ModelSpecOptions{o.mtp}));
  REFIT_ASSIGN_OR_RETURN(io::Checkpoint ckpt,
                         io::Checkpoint::Open(o.checkpoint));
  s.ckpt = std::make_unique<io::Checkpoint>(std::move(ckpt));
  REFIT_ASSIGN_OR_RETURN(s.bound, exec::BindCheckpoint(s.spec, *s.ckpt, fp8));
  REFIT_ASSIGN_OR_RETURN(RefitTopology topo,
                         MakeRunTopology(o, s.spec, processes));
  s.topo = topo;
  REFIT_ASSIGN_OR_RETURN(PrecisionOptions precision, MakePrecisionOptions(o));
  precision.kept_fp8_block = s.bound.block;
  REFIT_ASSIGN_OR_RETURN(s.formats, ResolveFormats(s.spec, topo, precision));
  s.precision = precision;
  s.plan_options = s.formats.plan_options();
  s.plan_options.fanout_gpus_per_node = o.fanout_gpus_per_node;
  return s;
}

void LogSkippedTensors(const RunSetup& s) {
  for (const std::string& name : s.bound.skipped) {
    spdlog::info("not refit (MTP layer or tied copy): {}", name);
  }
}

}  // namespace refit::cli
