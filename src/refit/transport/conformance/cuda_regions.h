// The conformance cases' buffers in device memory (CUDA harnesses only):
// cudaMalloc on the calling thread's current device, filled and checked
// through cudaMemcpy.
#ifndef REFIT_TRANSPORT_CONFORMANCE_CUDA_REGIONS_H_
#define REFIT_TRANSPORT_CONFORMANCE_CUDA_REGIONS_H_

#include <cuda_runtime_api.h>

#include "refit/cuda/cuda_check.h"
#include "refit/transport/conformance/copy_service_conformance.h"

namespace refit::exec::conformance {

class CudaRegions final : public RegionMemory {
 public:
  MemoryKind kind() const override { return MemoryKind::kCuda; }
  Result<std::byte*> Allocate(uint64_t bytes) override {
    void* p = nullptr;
    REFIT_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, bytes), "regions: cudaMalloc");
    return static_cast<std::byte*>(p);
  }
  void Free(std::byte* p) override { cudaFree(p); }
  Status Upload(std::byte* dst, const std::byte* src, uint64_t n) override {
    REFIT_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice),
                               "regions: upload");
    return OkStatus();
  }
  Status Download(std::byte* dst, const std::byte* src, uint64_t n) override {
    REFIT_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost),
                               "regions: download");
    return OkStatus();
  }
};

}  // namespace refit::exec::conformance

#endif  // REFIT_TRANSPORT_CONFORMANCE_CUDA_REGIONS_H_
