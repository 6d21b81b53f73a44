#include "refit/cli/run_setup.h"

#include <spdlog/spdlog.h>

#include "refit/cli/commands.h"
#include "refit/core/layout.h"

namespace refit::cli {

namespace {

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
  REFIT_ASSIGN_OR_RETURN(Layout dst, MakeLayout(o.dst, dw, spec, "dst"));
  return MakeTopology(src, dst, 0, split ? sw : 0, ranks);
}

Result<ConvertSide> ParseSide(const std::string& value, const char* option) {
  if (value == "send") return ConvertSide::kSend;
  if (value == "recv") return ConvertSide::kRecv;
  return InvalidArgument(std::string(option) + ": unknown value '" + value +
                         "' (send or recv)");
}

Result<exec::Fp8Source> ParseFp8Source(const std::string& value) {
  if (value == "dequantise") return exec::Fp8Source::kDequantise;
  if (value == "keep") return exec::Fp8Source::kKeep;
  return InvalidArgument("--fp8-source: unknown value '" + value +
                         "' (keep or dequantise)");
}

// `st` with the option that gave the bad value named first.
Status ForOption(const char* option, Status st) {
  if (st.ok()) return st;
  return Status(st.code(), std::string(option) + ": " + st.message());
}

}  // namespace

Result<PrecisionOptions> MakePrecisionOptions(const RunOptions& o) {
  PrecisionOptions p;
  if (!o.dst_dtype.empty()) {
    REFIT_RETURN_IF_ERROR(
        ForOption("--dst-dtype", ApplyDstDType(o.dst_dtype, p)));
  }
  for (const std::string& c : o.casts) {
    Result<FormatRule> r = ParseCastRule(c);
    REFIT_RETURN_IF_ERROR(ForOption("--cast", r.status()));
    p.rules.push_back(*r);
  }
  REFIT_ASSIGN_OR_RETURN(p.cast_on, ParseSide(o.cast_on, "--cast-on"));
  if (!o.quantize_on.empty()) {
    REFIT_ASSIGN_OR_RETURN(p.quantize_on,
                           ParseSide(o.quantize_on, "--quantize-on"));
  }
  p.fp8.block = {o.fp8_block, o.fp8_block};
  if (o.fp8_scale != "f32" && o.fp8_scale != "ue8m0") {
    return InvalidArgument("--fp8-scale: unknown value '" + o.fp8_scale +
                           "' (f32 or ue8m0)");
  }
  p.fp8.scale_format = o.fp8_scale == "ue8m0" ? quant::BlockScaleFormat::kUe8m0
                                              : quant::BlockScaleFormat::kF32;
  p.mxfp8_swizzled = o.mxfp8_swizzled;
  return p;
}

Result<RunSetup> PrepareRun(const RunOptions& o, int processes) {
  RunSetup s;
  REFIT_ASSIGN_OR_RETURN(const exec::Fp8Source fp8,
                         ParseFp8Source(o.fp8_source));
  REFIT_ASSIGN_OR_RETURN(s.spec, LoadModelSpec(o.checkpoint));
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
  return s;
}

void LogSkippedTensors(const RunSetup& s) {
  for (const std::string& name : s.bound.skipped) {
    spdlog::info("not refit (MTP layer or tied copy): {}", name);
  }
}

}  // namespace refit::cli
