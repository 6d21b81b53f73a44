// Saving one destination rank's tensors (`refit run --save`): a safetensors
// file per rank, named as that rank's Megatron model names its tensors.
#ifndef REFIT_CHECKPOINT_RANK_FILE_H_
#define REFIT_CHECKPOINT_RANK_FILE_H_

#include <string>
#include <vector>

#include "refit/core/format/dst_format.h"
#include "refit/exec/dst_tensors.h"
#include "refit/io/safetensors.h"

namespace refit::exec {

/// The tensors of `dst` (of rank `layout_rank` of `layout`) as the writer
/// takes them, named as the layout's family names them (LocalTensorParts,
/// FusedTensorOf; vllm / sglang experts stacked, DefaultExpertBinding):
/// every data shard in its destination dtype
/// and, after a quantised weight NAME, NAME_scale_inv (F32 [rows, cols],
/// block FP8) or NAME_scale (U8 E8M0 [rows, cols], MXFP8; 1-D of the padded
/// byte count when swizzled). Data pointers stay owned by `dst`.
std::vector<io::TensorToWrite> DstTensorsToWrite(const ModelSpec& dst_spec,
                                                 const FormatPlan& formats,
                                                 const DstTensors& dst,
                                                 const Layout& layout,
                                                 int layout_rank);

/// Writes the destination tensors of global rank `global_rank` (rank
/// `layout_rank` of `layout`) to DIR/rank-NNNNN.safetensors (NNNNN the global
/// rank), atomically, with metadata format=pt, layout, rank (within layout),
/// world_size and layer_offset (its pipeline stage's first layer). Creates
/// `dir`. Returns the file's path.
/// Errors: kIoError naming the folder or file.
Result<std::string> SaveRankFile(const std::string& dir, int global_rank,
                                 const ModelSpec& dst_spec,
                                 const FormatPlan& formats,
                                 const DstTensors& dst, const Layout& layout,
                                 int layout_rank);

}  // namespace refit::exec

#endif  // REFIT_CHECKPOINT_RANK_FILE_H_
