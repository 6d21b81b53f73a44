// CudaFormatKernels of a build without CUDA: it says so.
#include "refit/exec/format_kernels.h"

namespace refit::exec {

Result<std::unique_ptr<FormatKernels>> CudaFormatKernels() {
  return Unimplemented(
      "cuda memory with a destination format: this build of refit has no "
      "CUDA (REFIT_WITH_CUDA, nvcc not found)");
}

}  // namespace refit::exec
