// CudaIpcMemory in a build of refit without CUDA.
#include "refit/transport/cuda_ipc/ipc_memory.h"

namespace refit::exec {

Result<std::unique_ptr<IpcMemory>> CudaIpcMemory() {
  return Unimplemented(
      "cuda ipc memory: this build of refit has no CUDA (REFIT_WITH_CUDA)");
}

}  // namespace refit::exec
