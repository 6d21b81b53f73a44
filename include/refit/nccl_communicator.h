// The "nccl" refit method: bytes move between GPUs over one NCCL
// communicator (grouped ncclSend / ncclRecv, Megatron's NCCL copy service,
// megatron_resharding.md §1.4), while the group's small control collectives
// (plan agreement, the NCCL unique id) go over a communicator the caller
// already has: an MpiCommunicator (one process per GPU) or a LocalWorld rank
// (threads, one GPU each). NCCL allows one rank per GPU in a communicator.
#ifndef REFIT_NCCL_COMMUNICATOR_H_
#define REFIT_NCCL_COMMUNICATOR_H_

#include <chrono>
#include <cstdint>
#include <memory>

#include "refit/communicator.h"
#include "refit/core/status.h"

namespace refit {

struct NcclOptions {
  /// A rank fails (kDeadlineExceeded) when NCCL makes no progress (a group
  /// enqueued, a round finished) for this long; the NCCL communicator is then
  /// aborted and the service unusable.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  /// Device memory per rank for chunks not contiguous in device memory on
  /// this side (and for host tensors), bytes.
  uint64_t max_staging_bytes = 256ull << 20;
  /// The CUDA device of this rank; -1: the calling thread's current device.
  int device = -1;
};

/// True when this build of refit has the NCCL transport.
bool HaveNccl();

/// The group of `control`'s ranks with NCCL as the transport: method()
/// "nccl", rank, size, timeout and AllGather are `control`'s (which must
/// outlive the result); CreateCopyService is collective: rank 0 makes an
/// NCCL unique id, AllGather spreads it, every rank joins a non-blocking
/// NCCL communicator on its device. Tensors may be CUDA (sent and received
/// in place when contiguous) or host memory (staged through the device).
/// Errors: kUnimplemented when refit was built without NCCL.
Result<std::unique_ptr<Communicator>> NcclCommunicator(
    Communicator& control, const NcclOptions& options = {});

}  // namespace refit

#endif  // REFIT_NCCL_COMMUNICATOR_H_
