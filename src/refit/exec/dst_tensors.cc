#include "refit/exec/dst_tensors.h"

namespace refit::exec {

DstTensors DstTensors::ForRank(const ModelSpec& dst_spec,
                               const FormatPlan& formats, const Layout& layout,
                               int layout_rank) {
  DstTensors t;
  t.data_ = ShardArena::ForRank(dst_spec, layout, layout_rank);
  t.scales_ = ShardScales::ForArena(dst_spec, formats, t.data_,
                                    ShardScales::Side::kDestination);
  return t;
}

DstTensors DstTensors::Geometry(const ModelSpec& dst_spec,
                                const FormatPlan& formats, const Layout& layout,
                                int layout_rank) {
  DstTensors t;
  t.data_ = ShardArena::Geometry(dst_spec, layout, layout_rank);
  t.scales_ = ShardScales::Layouts(dst_spec, formats, t.data_,
                                   ShardScales::Side::kDestination);
  return t;
}

}  // namespace refit::exec
