#include "refit/cuda/cuda_check.h"

namespace refit::cuda {

Status CudaStatus(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return OkStatus();
  // Reported here: a later launch's check must not see it again (a sticky
  // error stays all the same).
  (void)cudaGetLastError();
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
