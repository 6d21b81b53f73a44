// The "cuda_ipc" refit method: processes on one node (a trainer and an
// inference engine collocated on the same GPUs, or on different GPUs of the
// node) where each sender writes straight into its receivers' CUDA tensors
// through CUDA IPC (cudaIpcGetMemHandle / cudaIpcOpenMemHandle; CUDA runtime
// API, "Interprocess communication"): one copy, no staging, receive
// allocations exported once and mapped once while the plan's blocks stay the
// same. Small metadata (headers, manifests of exported blocks, completion
// records) goes over the control communicator's copy service (MPI).
#ifndef REFIT_CUDA_IPC_COMMUNICATOR_H_
#define REFIT_CUDA_IPC_COMMUNICATOR_H_

#include <memory>

#include "refit/communicator.h"
#include "refit/core/status.h"

namespace refit {

struct CudaIpcGroupOptions {
  /// Skip re-exporting a receiver's blocks when they are the last Run's
  /// (same tasks, pointers, runs, and allocations: a tensor freed and
  /// reallocated at the same address, CUDA's CU_POINTER_ATTRIBUTE_BUFFER_ID
  /// changed, is exported again).
  bool reuse_unchanged_manifests = true;
};

/// True when this build of refit has the CUDA IPC transport (CUDA).
bool HaveCudaIpc();

/// The group of `control`'s ranks (which must outlive the result) with CUDA
/// IPC as the transport: method() "cuda_ipc"; rank, size, timeout and
/// AllGather are `control`'s; CreateCopyService (collective) opens
/// `control`'s copy service for the metadata and the IPC service over it.
/// Every bound tensor must be CUDA memory in an exportable allocation
/// (cudaMalloc, PyTorch's caching allocator without expandable segments);
/// other memory fails the refit naming the tensor. The control's timeout
/// bounds every wait, the longest copy of one refit included.
/// After a failed refit (a timeout), peers may still be writing into this
/// rank's receive tensors: keep them allocated until the group's next refit
/// or its close.
/// Errors: kUnimplemented when refit was built without CUDA;
/// kInvalidArgument when `control`'s ranks (more than one) are threads of
/// one process (shares_process()).
Result<std::unique_ptr<Communicator>> CudaIpcCommunicator(
    Communicator& control, const CudaIpcGroupOptions& options = {});

}  // namespace refit

#endif  // REFIT_CUDA_IPC_COMMUNICATOR_H_
