// Opening the NCCL copy service: the p2p copy service (../p2p) over the NCCL
// backend (nccl_p2p_backend.h), on a communicator bootstrapped over the
// group's control communicator or on one the caller made. No NCCL include.
#ifndef REFIT_TRANSPORT_NCCL_NCCL_COPY_SERVICE_H_
#define REFIT_TRANSPORT_NCCL_NCCL_COPY_SERVICE_H_

#include <memory>

#include "refit/communicator.h"
#include "refit/exec/copy_service.h"
#include "refit/nccl_communicator.h"

namespace refit::exec {

/// Collective over `control`: rank 0 calls ncclGetUniqueId, control.AllGather
/// gives every rank its id, each joins a non-blocking communicator
/// (ncclCommInitRankConfig, blocking = 0) on options.device within the
/// timeout. Errors: kUnimplemented without NCCL; kDeadlineExceeded when the
/// communicator is not ready within the timeout; kIoError for NCCL errors;
/// AllGather's.
Result<std::unique_ptr<CopyService>> ConnectNcclCopyService(
    Communicator& control, const NcclOptions& options);

/// The service over `nccl_comm`, an ncclComm_t the caller made and keeps
/// (neither destroyed nor aborted by the service). With a blocking
/// communicator a missing peer blocks inside NCCL, beyond refit's timeout:
/// prefer a non-blocking one. After a timeout or an NCCL error the service
/// is unusable and the caller aborts the communicator (ncclCommAbort); the
/// service's device buffers then stay allocated, as NCCL's kernels may still
/// use them. Errors: kUnimplemented without NCCL; the backend's.
Result<std::unique_ptr<CopyService>> NcclCopyServiceOnComm(
    void* nccl_comm, const NcclOptions& options);

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_NCCL_NCCL_COPY_SERVICE_H_
