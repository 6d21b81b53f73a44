#include "refit/exec/shard_arena.h"

#include <cstdlib>

namespace refit::exec {

void ShardArena::Free::operator()(std::byte* p) const { std::free(p); }

uint64_t ShardArena::Plan(const ModelSpec& spec, const Layout& layout,
                          int layout_rank, std::vector<uint64_t>& offsets) {
  const size_t n = spec.params.size();
  data_.assign(n, nullptr);
  bytes_.assign(n, 0);
  geometry_.resize(n);
  offsets.assign(n, 0);
  uint64_t cursor = 0;
  for (size_t i = 0; i < n; ++i) {
    const ParamSpec& p = spec.params[i];
    if (!HoldsParam(p, i, layout, layout_rank)) continue;
    geometry_[i] = ShardOf(p, layout, ShardCoord(p, layout, layout_rank));
    bytes_[i] = geometry_[i].LocalElements() * DTypeSize(p.dtype);
    offsets[i] = cursor;
    held_.push_back(static_cast<uint32_t>(i));
    total_ += bytes_[i];
    cursor += (bytes_[i] + 63) / 64 * 64;
  }
  return cursor;
}

ShardArena ShardArena::ForRank(const ModelSpec& spec, const Layout& layout,
                               int layout_rank) {
  ShardArena a;
  std::vector<uint64_t> offsets;
  a.raw_ = a.Plan(spec, layout, layout_rank, offsets);
  // calloc: zeroed pages, mapped lazily for large arenas.
  a.base_.reset(static_cast<std::byte*>(std::calloc(a.raw_ + 64, 1)));
  for (uint32_t p : a.held_) a.data_[p] = a.base_.get() + offsets[p];
  return a;
}

ShardArena ShardArena::Geometry(const ModelSpec& spec, const Layout& layout,
                                int layout_rank) {
  ShardArena a;
  std::vector<uint64_t> offsets;
  a.Plan(spec, layout, layout_rank, offsets);
  return a;
}

}  // namespace refit::exec
