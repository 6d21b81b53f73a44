#include "refit/cuda/cuda_check.h"

namespace refit::cuda {

Status CudaStatus(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return OkStatus();
  return Internal(what + ": " + cudaGetErrorName(err) + ": " +
                  cudaGetErrorString(err));
}

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

}  // namespace refit::cuda
