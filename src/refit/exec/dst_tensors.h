// The destination tensors of one rank when the refit converts: the data
// shards in their destination dtypes and, for quantised weights, their scale
// tensors (scale_layout.h).
#ifndef REFIT_EXEC_DST_TENSORS_H_
#define REFIT_EXEC_DST_TENSORS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "refit/core/format/scale_layout.h"
#include "refit/exec/shard_arena.h"
#include "refit/exec/shard_scales.h"

namespace refit::exec {

class DstTensors {
 public:
  DstTensors() = default;
  /// The shards of `layout_rank` (a rank of `layout`) for `dst_spec`
  /// (DestinationSpec of the source spec) and zeroed scale tensors of its
  /// quantised parameters.
  static DstTensors ForRank(const ModelSpec& dst_spec,
                            const FormatPlan& formats, const Layout& layout,
                            int layout_rank);
  /// The same tensors without memory (a view of tensors the caller owns):
  /// every data and scale pointer is nullptr until BindData / BindScales.
  static DstTensors Geometry(const ModelSpec& dst_spec,
                             const FormatPlan& formats, const Layout& layout,
                             int layout_rank);

  /// Points parameter `p`'s shard (data().shard_bytes(p) bytes) or its scales
  /// (scale_layout(p).bytes bytes) at caller-owned memory.
  void BindData(uint32_t p, std::byte* data) { data_.Bind(p, data); }
  void BindScales(uint32_t p, std::byte* data) { scales_.Bind(p, data); }

  /// The data shards (dtype of dst_spec).
  const ShardArena& data() const { return data_; }
  /// Every scale tensor.
  const ShardScales& scale_tensors() const { return scales_; }
  /// Scale tensor of parameter `p`, nullptr when it has none.
  std::byte* scales(uint32_t p) const { return scales_.data(p); }
  /// Scale layout of parameter `p` (empty when unquantised or not held).
  const ScaleLayout& scale_layout(uint32_t p) const {
    return scales_.layout(p);
  }

 private:
  ShardArena data_;
  ShardScales scales_;
};

}  // namespace refit::exec

#endif  // REFIT_EXEC_DST_TENSORS_H_
