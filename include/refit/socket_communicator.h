// The "socket" refit method: the processes of one node, launched by anything
// (torchrun, Ray, a trainer spawning its engine's workers; no MPI), joined by
// a rendezvous folder they share. Bytes move over Unix-domain sockets
// (unix(7)) between host tensors; as the control group of the "cuda_ipc" and
// "nccl" methods (CudaIpcCommunicator, NcclCommunicator) it carries their
// small messages while CUDA tensors move over CUDA IPC or NCCL.
#ifndef REFIT_SOCKET_COMMUNICATOR_H_
#define REFIT_SOCKET_COMMUNICATOR_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "refit/communicator.h"
#include "refit/core/status.h"

namespace refit {

struct SocketOptions {
  /// A rank fails (kDeadlineExceeded) when no byte moves for this long, also
  /// while the group connects.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  /// Memory per rank for the pieces of one round of copies, bytes.
  uint64_t max_staging_bytes = 256ull << 20;
};

/// The group of `size` processes that each call this with their own `rank`
/// (0 <= rank < size) and the same `rendezvous` folder (existing, on this
/// node, used by one group at a time; the sockets' paths must stay under 108
/// bytes). Collective: returns once this rank is connected to every other;
/// no file is left in the folder. method() "socket"; shares_process()
/// false.
/// Errors: kInvalidArgument for a rank out of range or a path too long;
/// kDeadlineExceeded naming the ranks not heard from within the timeout;
/// kIoError for a refused system call.
Result<std::unique_ptr<Communicator>> SocketCommunicator(
    const std::string& rendezvous, int rank, int size,
    const SocketOptions& options = {});

}  // namespace refit

#endif  // REFIT_SOCKET_COMMUNICATOR_H_
