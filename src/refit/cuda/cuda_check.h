// CUDA runtime errors as refit Status values (the CUDA parts return Status
// like the rest of refit; nothing throws or aborts).
#ifndef REFIT_CUDA_CUDA_CHECK_H_
#define REFIT_CUDA_CUDA_CHECK_H_

#include <cuda_runtime_api.h>

#include <string>

#include "refit/core/status.h"

namespace refit::cuda {

/// OK for cudaSuccess; otherwise kInternal "<what>: <CUDA error name>:
/// <description>", and the runtime's last error cleared (cudaGetLastError),
/// so that a later launch check does not report it again.
Status CudaStatus(cudaError_t err, const std::string& what);

/// Devices this process can use; 0 when there is no device or no driver
/// (never an error: callers skip GPU work then).
int DeviceCount();

}  // namespace refit::cuda

#define REFIT_CUDA_RETURN_IF_ERROR(expr, what)                 \
  do {                                                         \
    const cudaError_t refit_cuda_err_ = (expr);                \
    if (refit_cuda_err_ != cudaSuccess)                        \
      return ::refit::cuda::CudaStatus(refit_cuda_err_, what); \
  } while (0)

#endif  // REFIT_CUDA_CUDA_CHECK_H_
