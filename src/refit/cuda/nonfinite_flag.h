// The quantisers' report of a non-finite input element: a device word reset
// to kNoNonFinite, lowered by the kernel (atomicMin of a key naming the
// element), read back once the stream has run.
#ifndef REFIT_CUDA_NONFINITE_FLAG_H_
#define REFIT_CUDA_NONFINITE_FLAG_H_

#include <cuda_runtime_api.h>

#include <string>

#include "refit/core/status.h"
#include "refit/cuda/cuda_check.h"

namespace refit::cuda {

inline constexpr unsigned long long kNoNonFinite = ~0ull;

/// Allocates the flag on `stream`, resets it, calls `launch(flag)` (which
/// queues the kernel and returns its Status), reads the flag back, frees it
/// and synchronises `stream`: freed and synchronised also when a step
/// fails, so no queued work outlives the call. Returns the kernel's lowest
/// key, kNoNonFinite when every element was finite.
/// Errors: the first failed step's (kInternal naming `what` for CUDA).
template <class Launch>
Result<unsigned long long> RunWithNonFiniteFlag(cudaStream_t stream,
                                                const std::string& what,
                                                Launch launch) {
  unsigned long long* flag = nullptr;
  REFIT_CUDA_RETURN_IF_ERROR(cudaMallocAsync(&flag, sizeof(*flag), stream),
                             what + " flag");
  unsigned long long first = kNoNonFinite;
  auto queue = [&]() -> Status {
    REFIT_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(flag, &first, sizeof(first),
                                               cudaMemcpyHostToDevice, stream),
                               what + " flag");
    REFIT_RETURN_IF_ERROR(launch(flag));
    REFIT_CUDA_RETURN_IF_ERROR(cudaGetLastError(), what + " launch");
    REFIT_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(&first, flag, sizeof(first),
                                               cudaMemcpyDeviceToHost, stream),
                               what + " flag");
    return OkStatus();
  };
  const Status queued = queue();
  const cudaError_t freed = cudaFreeAsync(flag, stream);
  const cudaError_t synced = cudaStreamSynchronize(stream);
  REFIT_RETURN_IF_ERROR(queued);
  REFIT_CUDA_RETURN_IF_ERROR(freed, what + " flag");
  REFIT_CUDA_RETURN_IF_ERROR(synced, what);
  return first;
}

}  // namespace refit::cuda

#endif  // REFIT_CUDA_NONFINITE_FLAG_H_
