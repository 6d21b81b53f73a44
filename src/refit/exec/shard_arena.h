// The local shards one rank holds for one layout: owned in a single
// allocation, or a view of tensors someone else owns (the caller's tensors of
// a session, bound by parameter).
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

/// Every shard a rank holds. Owned arenas (ForRank) keep each shard 64-byte
/// aligned and zero-initialised (so vocabulary padding rows are zero, as
/// Megatron pads them); views (Geometry) start with null data, set per
/// parameter with Bind.
class ShardArena {
 public:
  ShardArena() = default;
  /// Lays out and allocates the shards of `layout_rank` (a rank of `layout`,
  /// not global).
  static ShardArena ForRank(const ModelSpec& spec, const Layout& layout,
                            int layout_rank);
  /// The same shards without memory: data(p) is nullptr until Bind.
  static ShardArena Geometry(const ModelSpec& spec, const Layout& layout,
                             int layout_rank);

  /// Points held parameter `param` at `data` (shard_bytes(param) bytes that
  /// the caller owns and keeps alive while the arena is used).
  void Bind(uint32_t param, std::byte* data) { data_[param] = data; }

  /// Parameter indices held, in spec order.
  const std::vector<uint32_t>& params() const { return held_; }
  /// Shard data of parameter `param`, nullptr if not held (or not bound).
  std::byte* data(uint32_t param) const { return data_[param]; }
  /// Geometry of a held parameter's shard.
  const ShardGeometry& geometry(uint32_t param) const {
    return geometry_[param];
  }
  /// Bytes of a held parameter's shard.
  uint64_t shard_bytes(uint32_t param) const { return bytes_[param]; }
  /// Bytes of all shards (without alignment padding).
  uint64_t total_bytes() const { return total_; }
  /// The whole allocation of an owned arena (shards plus alignment padding),
  /// for baselines that copy the same number of bytes into the same memory;
  /// nullptr and 0 for a view.
  std::byte* raw() const { return base_.get(); }
  uint64_t raw_bytes() const { return raw_; }

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  // Geometry of every held shard; returns the bytes of an owned arena, each
  // shard at the 64-byte aligned offsets of `offsets`.
  uint64_t Plan(const ModelSpec& spec, const Layout& layout, int layout_rank,
                std::vector<uint64_t>& offsets);

  std::unique_ptr<std::byte, Free> base_;
  std::vector<uint32_t> held_;
  std::vector<std::byte*> data_;
  std::vector<uint64_t> bytes_;
  std::vector<ShardGeometry> geometry_;
  uint64_t total_ = 0;
  uint64_t raw_ = 0;
};

}  // namespace refit::exec

#endif  // REFIT_EXEC_SHARD_ARENA_H_
