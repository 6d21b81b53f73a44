#include "refit/exec/session/shared_shards.h"

#include <algorithm>

#include "refit/core/shard.h"

namespace refit::exec {

namespace {

bool SameGeometry(const ShardGeometry& a, const ShardGeometry& b) {
  if (a.local_shape != b.local_shape || a.dim != b.dim ||
      a.segments.size() != b.segments.size()) {
    return false;
  }
  for (size_t i = 0; i < a.segments.size(); ++i) {
    const Segment& x = a.segments[i];
    const Segment& y = b.segments[i];
    if (x.global_start != y.global_start || x.local_start != y.local_start ||
        x.length != y.length) {
      return false;
    }
  }
  return true;
}

// The bytes a format leaves in the destination tensors (not how they get
// there: the side and receive widening do not change them).
bool SameFormat(const ParamFormat& a, const ParamFormat& b) {
  return a.kind == b.kind && a.dtype == b.dtype &&
         a.block.rows == b.block.rows && a.block.cols == b.block.cols &&
         a.scale_format == b.scale_format && a.swizzled == b.swizzled;
}

// The layout rank of global rank `rank` in `layout` at `offset`, or -1.
int LayoutRank(int rank, int offset, const Layout& layout) {
  const int r = rank - offset;
  return r >= 0 && r < layout.world_size() ? r : -1;
}

// True when parameter `p` has the same bytes on layout rank `ra` of `a` and
// `rb` of `b`.
bool SameShard(const ModelSpec& spec, uint32_t p, const Layout& a, int ra,
               const FormatPlan& fa, const Layout& b, int rb,
               const FormatPlan& fb) {
  const ParamSpec& ps = spec.params[p];
  if (!HoldsParam(ps, p, a, ra) || !HoldsParam(ps, p, b, rb)) return false;
  if (!SameFormat(fa.params[p], fb.params[p])) return false;
  return SameGeometry(ShardOf(ps, a, ShardCoord(ps, a, ra)),
                      ShardOf(ps, b, ShardCoord(ps, b, rb)));
}

}  // namespace

std::vector<CopiedShard> SharedShards(const ModelSpec& spec,
                                      std::span<const RefitTopology> topos,
                                      std::span<const FormatPlan> formats,
                                      size_t d) {
  std::vector<CopiedShard> out;
  const RefitTopology& to = topos[d];
  for (int r = 0; r < to.dst.world_size(); ++r) {
    const int rank = r + to.dst_rank_offset;
    for (uint32_t p = 0; p < spec.params.size(); ++p) {
      for (size_t e = 0; e < d; ++e) {
        const RefitTopology& from = topos[e];
        const int re = LayoutRank(rank, from.dst_rank_offset, from.dst);
        if (re < 0 || from.dst.family() != to.dst.family()) continue;
        if (SameShard(spec, p, to.dst, r, formats[d], from.dst, re,
                      formats[e])) {
          out.push_back({rank, p, static_cast<uint32_t>(e)});
          break;
        }
      }
    }
  }
  return out;
}

std::vector<uint64_t> SkipKeys(std::span<const CopiedShard> copied,
                               size_t params) {
  std::vector<uint64_t> keys;
  keys.reserve(copied.size());
  for (const CopiedShard& c : copied) {
    keys.push_back(static_cast<uint64_t>(c.rank) * params + c.param);
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace refit::exec
