#include "refit/cli/run_setup.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>
#include <string>

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

// One --also-dst value: its layout text and, after '@', "WORLD+OFFSET".
struct AlsoDst {
  std::string layout;
  int world = 0;  // 0: the --dst ranks
  int offset = 0;
};

Result<AlsoDst> ParseAlsoDst(const std::string& text) {
  AlsoDst a;
  const size_t at = text.find('@');
  a.layout = text.substr(0, at);
  if (at == std::string::npos) return a;
  const std::string ranks = text.substr(at + 1);
  const size_t plus = ranks.find('+');
  try {
    size_t used = 0;
    a.world = std::stoi(ranks.substr(0, plus), &used);
    if (used != plus || plus == std::string::npos)
      throw std::invalid_argument("");
    a.offset = std::stoi(ranks.substr(plus + 1), &used);
    if (used != ranks.size() - plus - 1) throw std::invalid_argument("");
  } catch (const std::exception&) {
    a.world = -1;
  }
  if (a.world <= 0 || a.offset < 0) {
    return InvalidArgument("--also-dst '" + text +
                           "': expected LAYOUT or LAYOUT@WORLD+OFFSET (e.g. "
                           "tp=2,family=vllm@4+4)");
  }
  return a;
}

// The topologies of the --also-dst destinations over `src` in a group of
// `ranks` (grown to hold them), their destinations on `dst`'s ranks unless
// they name their own.
Result<std::vector<RefitTopology>> AlsoTopologies(const RunOptions& o,
                                                  const ModelSpec& spec,
                                                  const Layout& src,
                                                  const Layout& dst,
                                                  int dst_offset, int* ranks) {
  std::vector<AlsoDst> parsed;
  for (const std::string& text : o.also_dst) {
    REFIT_ASSIGN_OR_RETURN(AlsoDst a, ParseAlsoDst(text));
    if (a.world == 0) a.world = dst.world_size(), a.offset = dst_offset;
    *ranks = std::max(*ranks, a.offset + a.world);
    parsed.push_back(std::move(a));
  }
  std::vector<RefitTopology> topos;
  for (const AlsoDst& a : parsed) {
    REFIT_ASSIGN_OR_RETURN(Layout l,
                           MakeLayout(a.layout, a.world, spec, "also-dst"));
    Result<RefitTopology> t = MakeTopology(src, l, 0, a.offset, *ranks);
    if (!t.ok()) {
      return Status(t.status().code(),
                    "--also-dst " + a.layout + ": " + t.status().message());
    }
    topos.push_back(std::move(t).value());
  }
  return topos;
}

Result<RefitTopology> MakeRunTopology(const RunOptions& o,
                                      const ModelSpec& spec, int processes,
                                      std::vector<RefitTopology>* also) {
  const bool split = o.src_world > 0 || o.dst_world > 0;
  if (split && (o.src_world <= 0 || o.dst_world <= 0 || o.world > 0)) {
    return InvalidArgument(
        "non-collocated runs need both --src-world and --dst-world (and no "
        "--world)");
  }
  const int default_world = processes > 0 ? processes : 4;
  const int sw = split ? o.src_world : (o.world > 0 ? o.world : default_world);
  const int dw = split ? o.dst_world : sw;
  int ranks = split ? sw + dw : sw;
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
  // --also-dst may grow the group (refused under mpirun before this).
  REFIT_ASSIGN_OR_RETURN(
      *also, AlsoTopologies(o, spec, src, dst, split ? sw : 0, &ranks));
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
  std::vector<RefitTopology> also;
  REFIT_ASSIGN_OR_RETURN(RefitTopology topo,
                         MakeRunTopology(o, s.spec, processes, &also));
  s.topo = topo;
  REFIT_ASSIGN_OR_RETURN(PrecisionOptions precision, MakePrecisionOptions(o));
  precision.kept_fp8_block = s.bound.block;
  REFIT_ASSIGN_OR_RETURN(s.formats, ResolveFormats(s.spec, topo, precision));
  s.precision = precision;
  for (RefitTopology& t : also) {
    REFIT_ASSIGN_OR_RETURN(FormatPlan f, ResolveFormats(s.spec, t, precision));
    s.also.push_back({std::move(t), std::move(f)});
  }
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
