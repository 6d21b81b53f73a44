#include "refit/cuda/copy_rows.h"

#include "refit/cuda/cuda_check.h"

namespace refit::cuda {

Status CopyRowsAsync(void* dst, uint64_t dst_pitch, const void* src,
                     uint64_t src_pitch, uint64_t width, uint64_t rows,
                     cudaStream_t stream, const std::string& what) {
  if (width == 0 || rows == 0) return OkStatus();
  if (rows == 1 || (dst_pitch == width && src_pitch == width)) {
    REFIT_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(dst, src, width * rows, cudaMemcpyDefault, stream),
        what + ": cudaMemcpyAsync");
    return OkStatus();
  }
  if (dst_pitch <= kMaxCopyPitch && src_pitch <= kMaxCopyPitch) {
    REFIT_CUDA_RETURN_IF_ERROR(
        cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows,
                          cudaMemcpyDefault, stream),
        what + ": cudaMemcpy2DAsync");
    return OkStatus();
  }
  auto* d = static_cast<std::byte*>(dst);
  const auto* s = static_cast<const std::byte*>(src);
  for (uint64_t r = 0; r < rows; ++r) {
    REFIT_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(d + r * dst_pitch, s + r * src_pitch, width,
                        cudaMemcpyDefault, stream),
        what + ": cudaMemcpyAsync of a row");
  }
  return OkStatus();
}

}  // namespace refit::cuda
