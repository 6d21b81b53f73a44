// Makes a CUDA device current for a scope and restores the previous one:
// the transports' calls run on their tensors' device whatever the calling
// thread had current (cudaSetDevice is per thread).
#ifndef REFIT_CUDA_DEVICE_GUARD_H_
#define REFIT_CUDA_DEVICE_GUARD_H_

#include <cuda_runtime_api.h>

namespace refit::cuda {

class DeviceGuard {
 public:
  /// `device` < 0: leaves the current device as it is.
  explicit DeviceGuard(int device) {
    if (device < 0) return;
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ != device) cudaSetDevice(device);
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace refit::cuda

#endif  // REFIT_CUDA_DEVICE_GUARD_H_
