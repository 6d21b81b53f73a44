#include "refit/exec/dst_tensors.h"
#include "refit/exec/session/tensor_binding.h"
#include "refit/sharded_model.h"

namespace refit {

ExpertBinding DefaultExpertBinding(LayoutFamily family) {
  const bool engine =
      family == LayoutFamily::kVllm || family == LayoutFamily::kSglang;
  return engine ? ExpertBinding::kStacked : ExpertBinding::kPerExpert;
}

Result<std::vector<ShardShape>> ShardShapes(const ModelSpec& spec,
                                            const ParallelLayout& layout,
                                            int rank, int world_size,
                                            const PrecisionOptions* transform,
                                            ExpertBinding experts) {
  REFIT_ASSIGN_OR_RETURN(Layout l, Layout::Create(layout, world_size, spec));
  if (rank < 0 || rank >= world_size) {
    return InvalidArgument("rank " + std::to_string(rank) +
                           " is not in a world of " +
                           std::to_string(world_size));
  }
  // Formats resolved as if refitting this layout onto itself: kinds, dtypes
  // and scale layouts do not depend on the source layout.
  REFIT_ASSIGN_OR_RETURN(RefitTopology topo,
                         MakeTopology(l, l, 0, 0, world_size));
  FormatPlan formats = IdentityFormats(spec);
  if (transform != nullptr || EngineLayoutCasts(spec, topo)) {
    REFIT_ASSIGN_OR_RETURN(
        formats, ResolveFormats(spec, topo,
                                transform ? *transform : PrecisionOptions{}));
  }
  const ModelSpec dst_spec = DestinationSpec(spec, formats);
  const exec::DstTensors t =
      exec::DstTensors::Geometry(dst_spec, formats, l, rank);
  const exec::SideBinding binding(
      dst_spec, formats, l, rank, t.data(),
      [&t](uint32_t p) -> const ScaleLayout& { return t.scale_layout(p); },
      exec::SideBinding::Side::kDestination);
  if (DefaultExpertBinding(l.family()) == ExpertBinding::kStacked) {
    experts = ExpertBinding::kStacked;
  }
  return binding.Shapes(experts);
}

}  // namespace refit
