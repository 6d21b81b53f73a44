// The scale tensors beside the block-scaled shards of one rank: destination
// shards quantised by the refit, or source shards kept as block FP8 from the
// checkpoint (--fp8-source keep). Layouts follow ScaleLayoutOf.
#ifndef REFIT_EXEC_SHARD_SCALES_H_
#define REFIT_EXEC_SHARD_SCALES_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "refit/core/format/scale_layout.h"
#include "refit/exec/shard_arena.h"

namespace refit::exec {

class ShardScales {
 public:
  /// Which shards of an arena get scales.
  enum class Side : uint8_t {
    kDestination,  ///< parameters whose format quantises (kind != kPlain)
    kSource,       ///< parameters whose source dtype is F8_E4M3 (kept FP8)
  };

  ShardScales() = default;
  /// Zeroed scale tensors for the shards of `arena` (built from `spec`, whose
  /// shapes are the parameters') that `side` selects.
  static ShardScales ForArena(const ModelSpec& spec, const FormatPlan& formats,
                              const ShardArena& arena, Side side);
  /// The same layouts without memory: data(p) is nullptr until Bind.
  static ShardScales Layouts(const ModelSpec& spec, const FormatPlan& formats,
                             const ShardArena& arena, Side side);

  /// Points parameter `p`'s scales at `data` (layout(p).bytes bytes that the
  /// caller owns and keeps alive while these scales are used).
  void Bind(uint32_t p, std::byte* data) { data_[p] = data; }

  /// Scale bytes of parameter `p`, nullptr when it has none.
  std::byte* data(uint32_t p) const {
    return data_.empty() ? nullptr : data_[p];
  }
  /// Layout of parameter `p`'s scales (empty when it has none).
  const ScaleLayout& layout(uint32_t p) const { return layouts_[p]; }

 private:
  std::vector<std::vector<std::byte>> owned_;  // empty for views
  std::vector<std::byte*> data_;
  std::vector<ScaleLayout> layouts_;
};

}  // namespace refit::exec

#endif  // REFIT_EXEC_SHARD_SCALES_H_
