// The P2pBackend over one NCCL communicator: a group of ncclSend / ncclRecv
// per Exchange (NCCL user guide, "Point-to-point communication" and "Group
// calls"), copies with cudaMemcpy2DAsync, all on one CUDA stream of the
// backend's, on the communicator's device. The communicator must be
// non-blocking (ncclConfig_t::blocking = 0), so that no call blocks the host
// while a peer is missing: each call polls ncclCommGetAsyncError within the
// timeout. A timeout or an NCCL error leaves the backend unusable and aborts
// an owned communicator (ncclCommAbort); a caller's communicator is left to
// the caller to abort, and the memory its kernels may still use stays
// allocated. Copies to or from pageable host memory first wait for the
// stream under the timeout (such a copy blocks the host). Only this file and
// its .cc include NCCL.
#ifndef REFIT_TRANSPORT_NCCL_NCCL_P2P_BACKEND_H_
#define REFIT_TRANSPORT_NCCL_NCCL_P2P_BACKEND_H_

#include <nccl.h>

#include <chrono>
#include <memory>

#include "refit/transport/nccl/nccl_library.h"
#include "refit/transport/p2p/p2p_backend.h"

namespace refit::exec {

struct NcclBackendOptions {
  /// A call fails with kDeadlineExceeded when NCCL has not moved on (a group
  /// enqueued, a round finished) for this long.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  /// The CUDA device of the communicator.
  int device = 0;
  /// True: the backend destroys the communicator (ncclCommDestroy) when it
  /// is destroyed; false: the caller owns it.
  bool owns_comm = true;
};

/// The backend of `comm`'s rank. Errors: kUnimplemented when NCCL cannot be
/// loaded (nccl_library.h); kInternal for CUDA errors (the stream could not
/// be created).
Result<std::unique_ptr<P2pBackend>> NcclP2pBackend(
    ncclComm_t comm, const NcclBackendOptions& options);

/// OK for ncclSuccess; otherwise kIoError "<what>: <NCCL error string>
/// (<ncclGetLastError>)".
Status NcclStatus(const NcclApi& nccl, ncclResult_t result, ncclComm_t comm,
                  const char* what);

/// Polls ncclCommGetAsyncError until `comm` leaves ncclInProgress. Errors:
/// kDeadlineExceeded after `timeout`; NcclStatus of an asynchronous error.
/// The caller aborts the communicator after an error where it owns it.
Status AwaitComm(const NcclApi& nccl, ncclComm_t comm,
                 std::chrono::milliseconds timeout, const char* what);

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_NCCL_NCCL_P2P_BACKEND_H_
