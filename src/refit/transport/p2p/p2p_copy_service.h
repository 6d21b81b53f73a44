// The p2p copy service: a CopyService over a P2pBackend (p2p_backend.h), the
// shape of NCCL point-to-point refit (Megatron's copy_services NCCL service:
// batched isend/irecv of each round's messages). A Run has three stages:
//  1. headers: every pair of ranks with a message between them (either way,
//     or to itself) swaps its P2pBudget, how many messages it sends the other
//     and whether that list is the one it sent last Run;
//  2. lists: each sender sends its (task, bytes) list, unless unchanged;
//  3. data: in rounds of one group each (p2p_schedule.h), every stream's
//     chunk r in round r. A chunk contiguous on this side in memory the
//     backend exchanges directly is sent from (received into) the tensors in
//     place; any other is packed into (unpacked from) a staging arena of at
//     most max_staging_bytes, reused round after round.
// The receiver checks each message against the sender's list: a message whose
// sizes differ, or that only one side submitted, is still received (into
// staging, discarded) so the sender completes, and the receiver's Run fails
// with kFailedPrecondition naming the task and both ranks; its blocks are
// left untouched. Metadata travels through the backend's own memory.
#ifndef REFIT_TRANSPORT_P2P_P2P_COPY_SERVICE_H_
#define REFIT_TRANSPORT_P2P_P2P_COPY_SERVICE_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "refit/exec/copy_service.h"
#include "refit/transport/p2p/p2p_backend.h"

namespace refit::exec {

struct P2pCopyOptions {
  /// Names the service in its errors ("nccl copy service: rank 1 ...").
  std::string name = "p2p copy service";
  /// The backend's timeout, for the errors' text ("waited 0.3 s").
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  /// Staging held at once per rank, sends and receives together, in bytes
  /// (> 0): the chunk size follows (p2p_schedule.h).
  uint64_t max_staging_bytes = 256ull << 20;
};

/// The endpoint of `backend`'s rank. Run's errors: kDeadlineExceeded "NAME:
/// rank R waited T s for task N from rank P (its message list | its bytes)"
/// when the backend times out (the endpoint is then unusable);
/// kFailedPrecondition for messages the two sides disagree on; the
/// backend's. Submit refuses (kInvalidArgument) a peer out of range and a
/// task submitted twice for one peer and direction.
/// capabilities(): the backend's memory kinds; not in place (strided chunks
/// are staged); any message size; max_staging_bytes.
std::unique_ptr<CopyService> MakeP2pCopyService(
    std::unique_ptr<P2pBackend> backend, const P2pCopyOptions& options);

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_P2P_P2P_COPY_SERVICE_H_
