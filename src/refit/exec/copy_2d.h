// Block lists as 2-D copies (rows of equal width at a fixed pitch on either
// side): what one cudaMemcpy2DAsync (or a row loop) moves. A copy engine that
// cannot gather and scatter by itself runs the list in order.
#ifndef REFIT_EXEC_COPY_2D_H_
#define REFIT_EXEC_COPY_2D_H_

#include <cstdint>
#include <span>
#include <vector>

#include "refit/exec/copy_service.h"

namespace refit::exec {

struct Copy2D {
  std::byte* dst = nullptr;
  uint64_t dst_pitch = 0;  ///< bytes from one row to the next (>= width)
  const std::byte* src = nullptr;
  uint64_t src_pitch = 0;
  uint64_t width = 0;   ///< bytes per row
  uint64_t height = 0;  ///< rows
};

/// The 2-D copies that move `from` (in order) into `to` (in order; the same
/// total bytes): whole runs of rows where both sides' runs line up or one
/// side is flat (one run, or runs without gaps: a pack into or an unpack
/// out of a staging buffer is one copy), pieces of runs where they do not.
/// Empty blocks are skipped.
std::vector<Copy2D> PlanCopies2D(std::span<const ConstBlock> from,
                                 std::span<const MutBlock> to);

}  // namespace refit::exec

#endif  // REFIT_EXEC_COPY_2D_H_
