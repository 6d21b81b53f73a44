#include "refit/exec/shard_arena.h"

#include <cstdlib>

namespace refit::exec {

void ShardArena::Free::operator()(std::byte* p) const { std::free(p); }

ShardArena ShardArena::ForRank(const ModelSpec& spec, const Layout& layout,
                               int layout_rank) {
  ShardArena a;
  const size_t n = spec.params.size();
  a.offset_.assign(n, -1);
  a.bytes_.assign(n, 0);
  a.geometry_.resize(n);
  uint64_t cursor = 0;
  for (size_t i = 0; i < n; ++i) {
    const ParamSpec& p = spec.params[i];
    if (!HoldsParam(p, i, layout, layout_rank)) continue;
    a.geometry_[i] = ShardOf(p, layout, ShardCoord(p, layout, layout_rank));
    a.bytes_[i] = a.geometry_[i].LocalElements() * DTypeSize(p.dtype);
    a.offset_[i] = static_cast<int64_t>(cursor);
    a.held_.push_back(static_cast<uint32_t>(i));
    a.total_ += a.bytes_[i];
    cursor += (a.bytes_[i] + 63) / 64 * 64;
  }
  // calloc: zeroed pages, mapped lazily for large arenas.
  a.raw_ = cursor;
  a.base_.reset(static_cast<std::byte*>(std::calloc(cursor + 64, 1)));
  return a;
}

}  // namespace refit::exec
