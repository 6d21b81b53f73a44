// SwapOptions::atomic: a host copy of one rank's destination tensors that a
// refit writes instead of the caller's tensors, published into them only
// after every rank of the group said its refit succeeded.
#ifndef REFIT_EXEC_SESSION_SHADOW_COPY_H_
#define REFIT_EXEC_SESSION_SHADOW_COPY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "refit/core/status.h"
#include "refit/sharded_model.h"

namespace refit::exec {

/// The byte intervals [data, data + nbytes) of the destination views are
/// merged into disjoint regions (overlapping or adjacent views, e.g. the
/// fused parts of one engine tensor, fall into one region); each region has
/// one shadow allocation, and every view is mapped at its own offset in its
/// region, so adjacency and relative alignment (mod 64 bytes) are kept. A
/// region holds exactly the union of its views' bytes: the gaps between
/// views are in no region, neither copied nor published.
class ShadowCopy {
 public:
  /// The shadow of `dst`, bound by rank `rank`: each region's memory is
  /// taken from `previous` (a shadow of an earlier call, may be null) when
  /// it has a region at the same caller address and of the same size (the
  /// caller refits the same tensors again: no new allocation, no page
  /// faults), else allocated without being touched. Views that no refit can
  /// bind (null data, not contiguous, a negative extent) keep their
  /// pointers: binding refuses them before any byte moves. Errors:
  /// kInvalidArgument naming the rank and the first tensor (in name order)
  /// that is not host memory.
  static Result<ShadowCopy> Create(const ShardedModel& dst, int rank,
                                   ShadowCopy* previous = nullptr);
  /// Create's memory check alone: every tensor of `dst` in host memory.
  static Status CheckHost(const ShardedModel& dst, int rank);

  ShadowCopy(ShadowCopy&&) = default;
  ShadowCopy& operator=(ShadowCopy&&) = default;

  /// `dst` with every mapped view pointing into the shadow (same names,
  /// shapes, dtypes and strides): what the refit binds.
  const ShardedModel& model() const { return model_; }
  /// Bytes of the shadow (the sum of the regions' sizes).
  uint64_t bytes() const { return bytes_; }

  /// Copies the caller's bytes into the shadow, so that bytes the refit does
  /// not write (vocabulary padding rows) are published unchanged.
  void Fill();
  /// Copies the shadow into the caller's tensors: every region, i.e. every
  /// view's bytes and nothing between views.
  void Publish() const;

 private:
  struct Region {
    std::byte* caller = nullptr;  // first byte in the caller's memory
    uint64_t size = 0;
    std::unique_ptr<std::byte[]> storage;  // size + alignment slack
    std::byte* shadow = nullptr;           // first byte in `storage`
  };

  ShadowCopy() = default;
  static bool Recycle(Region& r, ShadowCopy* previous);
  void Allocate(ShadowCopy* previous);
  void Map(const ShardedModel& dst);

  std::vector<Region> regions_;  // by caller address
  uint64_t bytes_ = 0;
  ShardedModel model_;
};

}  // namespace refit::exec

#endif  // REFIT_EXEC_SESSION_SHADOW_COPY_H_
