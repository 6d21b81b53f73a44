#include "refit/cli/engine_check.h"

#include <spdlog/spdlog.h>

#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "refit/core/engine_names.h"
#include "refit/io/config_file.h"
#include "refit/verify/engine_reference.h"

namespace refit::cli {

namespace {

verify::EngineFamily ReferenceFamily(LayoutFamily f) {
  if (f == LayoutFamily::kVllm) return verify::EngineFamily::kVllm;
  if (f == LayoutFamily::kSglang) return verify::EngineFamily::kSglang;
  return verify::EngineFamily::kHf;
}

// Casts other than the engine layout's own router cast (EngineRouterDType),
// which the reference builds.
int64_t UserCasts(const RunSetup& s) {
  const std::optional<DType> router =
      EngineRouterDType(s.spec, s.topo->dst.family());
  int64_t casts = 0;
  for (size_t p = 0; p < s.formats.params.size(); ++p) {
    const ParamFormat& f = s.formats.params[p];
    if (f.kind != FormatKind::kPlain || f.dtype == f.src_dtype) continue;
    casts +=
        !(router && f.dtype == *router && IsRouterWeight(s.spec.params[p]));
  }
  return casts;
}

// Why the reference cannot build the run's destination format; empty if it
// can.
std::string Unsupported(const RunSetup& s) {
  if (s.bound.fp8 == exec::Fp8Source::kKeep) return "FP8 sources kept as FP8";
  if (s.topo->dst.config().part == ModelPart::kMtp) {
    return "draft-model (part=mtp) layouts";
  }
  if (UserCasts(s) > 0) return "cast destinations";
  const quant::BlockFp8Options& fp8 = s.precision.fp8;
  if (s.formats.quantised > 0 &&
      (fp8.scale_format != quant::BlockScaleFormat::kF32 || fp8.min_amax > 0)) {
    return "block FP8 with other than F32 amax/448 scales";
  }
  return "";
}

// Which HF tensors the formats quantise (block FP8 or MXFP8).
std::shared_ptr<verify::EngineQuant> QuantOf(const RunSetup& s) {
  if (s.formats.quantised == 0) return nullptr;
  auto quant = std::make_shared<verify::EngineQuant>();
  quant->block_rows = s.precision.fp8.block.rows;
  quant->block_cols = s.precision.fp8.block.cols;
  quant->swizzled = s.precision.mxfp8_swizzled;
  auto names = std::make_shared<std::unordered_map<std::string, bool>>();
  for (size_t p = 0; p < s.spec.params.size(); ++p) {
    const FormatKind kind = s.formats.params[p].kind;
    quant->mxfp8 = quant->mxfp8 || kind == FormatKind::kMxfp8;
    const bool q = kind != FormatKind::kPlain;
    for (const std::string& hf : s.spec.params[p].hf_names) (*names)[hf] = q;
  }
  quant->quantised = [names](std::string_view hf) {
    auto it = names->find(std::string(hf));
    return it != names->end() && it->second;
  };
  return quant;
}

// Compares `tensors` with `want` by name, shape, dtype and bytes; logs the
// first differences. Returns how many differ or are missing on either side.
uint64_t Compare(int rank, const std::vector<verify::EngineTensor>& want,
                 const std::vector<exec::SideBinding::TensorBytes>& tensors) {
  std::map<std::string, const verify::EngineTensor*> by_name;
  for (const verify::EngineTensor& t : want) by_name[t.name] = &t;
  uint64_t wrong = 0;
  const auto report = [&](const std::string& name, const char* what) {
    if (++wrong <= 3) {
      spdlog::warn("engine reference: destination rank {} tensor {}: {}", rank,
                   name, what);
    }
  };
  for (const exec::SideBinding::TensorBytes& t : tensors) {
    auto it = by_name.find(t.shape.name);
    if (it == by_name.end()) {
      report(t.shape.name, "not in the engine's model");
      continue;
    }
    const verify::EngineTensor& w = *it->second;
    by_name.erase(it);
    if (w.shape != t.shape.shape || w.dtype != t.shape.dtype) {
      report(t.shape.name, "shape or dtype differs");
      continue;
    }
    size_t at = 0;
    bool same = true;
    for (const auto& [data, bytes] : t.parts) {
      same = same && at + bytes <= w.data.size() &&
             std::memcmp(w.data.data() + at, data, bytes) == 0;
      at += bytes;
    }
    if (!same || at != w.data.size()) report(t.shape.name, "bytes differ");
  }
  for (const auto& [name, t] : by_name) report(name, "missing");
  return wrong;
}

}  // namespace

std::optional<exec::DstTensorCheck> MakeEngineCheck(const RunOptions& o,
                                                    const RunSetup& s,
                                                    std::string* why_not) {
  const Layout& dst = s.topo->dst;
  if (dst.family() == LayoutFamily::kMegatron) return std::nullopt;
  if (const std::string no = Unsupported(s); !no.empty()) {
    *why_not = "the engine reference does not build " + no;
    return std::nullopt;
  }
  Result<std::string> config = io::ReadConfigText(o.checkpoint);
  if (!config.ok()) {
    *why_not = config.status().message();
    return std::nullopt;
  }
  const ParallelConfig& c = dst.config();
  const verify::EngineRefLayout layout{
      c.tp,
      c.pp,
      c.ep,
      c.expert_tp(),
      c.expert_placement,
      c.part == ModelPart::kMain ? 0 : s.spec.mtp_layers,
      c.w13_up_first};
  return
      [text = *config, layout, family = ReferenceFamily(dst.family()),
       quant = QuantOf(s), ckpt = s.ckpt.get(), world = dst.world_size()](
          int rank, const std::vector<exec::SideBinding::TensorBytes>& tensors)
          -> Result<uint64_t> {
        REFIT_ASSIGN_OR_RETURN(
            std::vector<verify::EngineTensor> want,
            verify::BuildEngineReference(text, *ckpt, family, layout, rank,
                                         world, quant.get()));
        return Compare(rank, want, tensors);
      };
}

}  // namespace refit::cli
