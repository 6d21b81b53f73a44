#include "refit/exec/shard_scales.h"

namespace refit::exec {

ShardScales ShardScales::Layouts(const ModelSpec& spec,
                                 const FormatPlan& formats,
                                 const ShardArena& arena, Side side) {
  ShardScales s;
  s.data_.assign(spec.params.size(), nullptr);
  s.layouts_.resize(spec.params.size());
  for (uint32_t p : arena.params()) {
    const ParamFormat& f = formats.params[p];
    const bool wanted = side == Side::kDestination
                            ? f.kind != FormatKind::kPlain
                            : f.src_dtype == DType::kF8E4M3;
    if (wanted)
      s.layouts_[p] = ScaleLayoutOf(spec.params[p], f, arena.geometry(p));
  }
  return s;
}

ShardScales ShardScales::ForArena(const ModelSpec& spec,
                                  const FormatPlan& formats,
                                  const ShardArena& arena, Side side) {
  ShardScales s = Layouts(spec, formats, arena, side);
  s.owned_.resize(spec.params.size());
  for (uint32_t p : arena.params()) {
    if (s.layouts_[p].bytes == 0) continue;
    s.owned_[p].assign(s.layouts_[p].bytes, std::byte{0});
    s.data_[p] = s.owned_[p].data();
  }
  return s;
}

}  // namespace refit::exec
