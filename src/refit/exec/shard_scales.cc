#include "refit/exec/shard_scales.h"

namespace refit::exec {

ShardScales ShardScales::ForArena(const ModelSpec& spec,
                                  const FormatPlan& formats,
                                  const ShardArena& arena, Side side) {
  ShardScales s;
  s.scales_.resize(spec.params.size());
  s.layouts_.resize(spec.params.size());
  for (uint32_t p : arena.params()) {
    const ParamFormat& f = formats.params[p];
    const bool wanted = side == Side::kDestination
                            ? f.kind != FormatKind::kPlain
                            : f.src_dtype == DType::kF8E4M3;
    if (!wanted) continue;
    s.layouts_[p] = ScaleLayoutOf(spec.params[p], f, arena.geometry(p));
    s.scales_[p].assign(s.layouts_[p].bytes, std::byte{0});
  }
  return s;
}

}  // namespace refit::exec
