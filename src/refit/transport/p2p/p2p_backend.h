// What a grouped point-to-point transport gives the p2p copy service
// (p2p_copy_service.h): contiguous sends and receives posted in groups, as
// NCCL's ncclGroupStart / ncclSend / ncclRecv / ncclGroupEnd do
// (nccl/nccl_p2p_backend.h), and copies between block lists on the same
// queue. Work is queued in call order and may run later (NCCL: on one CUDA
// stream); Wait returns when everything queued has finished. The thread
// backend (thread_p2p_backend.h) runs every call at once, ranks as threads.
#ifndef REFIT_TRANSPORT_P2P_P2P_BACKEND_H_
#define REFIT_TRANSPORT_P2P_P2P_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "refit/core/memory_kind.h"
#include "refit/core/status.h"
#include "refit/exec/copy_service.h"

namespace refit::exec {

/// `bytes` bytes at `data` to rank `peer`, or from it into `data`.
struct P2pSend {
  int peer = 0;
  const std::byte* data = nullptr;
  uint64_t bytes = 0;
};
struct P2pRecv {
  int peer = 0;
  std::byte* data = nullptr;
  uint64_t bytes = 0;
};

class P2pBackend {
 public:
  virtual ~P2pBackend() = default;
  /// This rank and the number of ranks.
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// The memory kinds Copy reads and writes (and so the service's).
  virtual std::vector<MemoryKind> kinds() const = 0;
  /// True when Exchange may send from or receive into `p` itself (NCCL:
  /// device memory); other memory goes through Allocate'd staging.
  virtual bool Exchangeable(const void* p) const = 0;
  /// `bytes` (> 0) of memory Exchange can use (NCCL: cudaMalloc), and its
  /// release. Errors: the allocator's, naming the size.
  virtual Result<std::byte*> Allocate(uint64_t bytes) = 0;
  virtual void Free(std::byte* p) = 0;
  /// Queues copying the bytes of `from` (in order) into those of `to` (the
  /// same total), after everything queued before.
  virtual Status Copy(std::span<const ConstBlock> from,
                      std::span<const MutBlock> to) = 0;
  /// Queues one group of sends and receives, after everything queued before.
  /// Between two ranks, the k-th send from A to B (over all groups) matches
  /// the k-th receive on B from A and must have the same size; a rank may
  /// send to itself. Errors: kDeadlineExceeded when the peers do not post
  /// their side within the backend's timeout (the backend is then
  /// unusable); the backend's.
  virtual Status Exchange(std::span<const P2pSend> sends,
                          std::span<const P2pRecv> recvs) = 0;
  /// Waits until everything queued has finished. Errors: kDeadlineExceeded
  /// when it has not within the backend's timeout (the backend is then
  /// unusable); the backend's (e.g. a send and receive of different sizes).
  virtual Status Wait() = 0;
  /// Work queued from now on starts after the work queued so far on the
  /// caller's CUDA stream (CopyService::OrderAfter). Default: nothing.
  virtual Status OrderAfter(uintptr_t /*cuda_stream*/) { return OkStatus(); }
};

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_P2P_P2P_BACKEND_H_
