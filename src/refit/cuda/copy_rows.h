// Strided byte copies queued on a CUDA stream, of any size: the one place
// refit calls cudaMemcpy2DAsync, whose pitches are limited to
// cudaDevAttrMaxPitch (2^31 - 1 bytes on current GPUs), so that a
// contiguous piece over 2 GiB (a 152064 x 8192 BF16 lm_head) still moves.
#ifndef REFIT_CUDA_COPY_ROWS_H_
#define REFIT_CUDA_COPY_ROWS_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "refit/core/status.h"

namespace refit::cuda {

/// The largest pitch cudaMemcpy2DAsync is given (bytes).
inline constexpr uint64_t kMaxCopyPitch = (uint64_t{1} << 31) - 1;

/// `rows` rows of `width` bytes, row r from byte r * src_pitch of `src` to
/// byte r * dst_pitch of `dst` (pitches >= width unless rows == 1), queued on
/// `stream` with cudaMemcpyDefault (host or device memory on either side):
/// one cudaMemcpyAsync where the rows are contiguous on both sides (one row,
/// or both pitches equal to the width); one cudaMemcpy2DAsync where both
/// pitches are at most kMaxCopyPitch; else one cudaMemcpyAsync per row.
/// Errors: kInternal naming `what` and the CUDA error.
Status CopyRowsAsync(void* dst, uint64_t dst_pitch, const void* src,
                     uint64_t src_pitch, uint64_t width, uint64_t rows,
                     cudaStream_t stream, const std::string& what);

}  // namespace refit::cuda

#endif  // REFIT_CUDA_COPY_ROWS_H_
