// The local shards one rank holds for one layout, in a single allocation.
#ifndef REFIT_EXEC_SHARD_ARENA_H_
#define REFIT_EXEC_SHARD_ARENA_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "refit/core/layout.h"
#include "refit/core/model_spec.h"
#include "refit/core/shard.h"

namespace refit::exec {

/// Every shard a rank holds, each 64-byte aligned, zero-initialised (so
/// vocabulary padding rows are zero, as Megatron pads them).
class ShardArena {
 public:
  ShardArena() = default;
  /// Lays out the shards of `layout_rank` (a rank of `layout`, not global).
  static ShardArena ForRank(const ModelSpec& spec, const Layout& layout,
                            int layout_rank);

  /// Parameter indices held, in spec order.
  const std::vector<uint32_t>& params() const { return held_; }
  /// Shard data of parameter `param`, nullptr if not held.
  std::byte* data(uint32_t param) const {
    return offset_[param] < 0 ? nullptr : base_.get() + offset_[param];
  }
  /// Geometry of a held parameter's shard.
  const ShardGeometry& geometry(uint32_t param) const {
    return geometry_[param];
  }
  /// Bytes of a held parameter's shard.
  uint64_t shard_bytes(uint32_t param) const { return bytes_[param]; }
  /// Bytes of all shards (without alignment padding).
  uint64_t total_bytes() const { return total_; }
  /// The whole allocation (shards plus alignment padding), for baselines
  /// that copy the same number of bytes into the same memory.
  std::byte* raw() const { return base_.get(); }
  uint64_t raw_bytes() const { return raw_; }

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte, Free> base_;
  std::vector<uint32_t> held_;
  std::vector<int64_t> offset_;
  std::vector<uint64_t> bytes_;
  std::vector<ShardGeometry> geometry_;
  uint64_t total_ = 0;
  uint64_t raw_ = 0;
};

}  // namespace refit::exec

#endif  // REFIT_EXEC_SHARD_ARENA_H_
