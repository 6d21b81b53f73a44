// The copy-service interface every transport implements (embedded threads
// now; MPI and NCCL later). Shape of Megatron's copy_services/base.CopyService:
// submit sends and receives, run them all, close.
#ifndef REFIT_EXEC_COPY_SERVICE_H_
#define REFIT_EXEC_COPY_SERVICE_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "refit/core/memory_kind.h"
#include "refit/core/status.h"

namespace refit::exec {

/// `nruns` runs of `run_bytes` bytes, run i at base + i * stride.
struct ConstBlock {
  const std::byte* base = nullptr;
  uint64_t run_bytes = 0;
  uint64_t nruns = 1;
  uint64_t stride = 0;
};
struct MutBlock {
  std::byte* base = nullptr;
  uint64_t run_bytes = 0;
  uint64_t nruns = 1;
  uint64_t stride = 0;
};

/// Total bytes of a block list.
uint64_t TotalBytes(std::span<const ConstBlock> blocks);
uint64_t TotalBytes(std::span<const MutBlock> blocks);

/// Copies the bytes described by `from` (in order) into those described by
/// `to` (in order). Both must describe the same number of bytes.
void GatherScatter(std::span<const ConstBlock> from,
                   std::span<const MutBlock> to);

/// What a transport can do, alike on every rank of one transport, so that a
/// caller can choose a transport (or refuse one) before any byte moves.
struct TransportCapabilities {
  /// Memory kinds the transport reads send blocks from, and writes receive
  /// blocks into.
  std::vector<MemoryKind> reads = {MemoryKind::kHost};
  std::vector<MemoryKind> writes = {MemoryKind::kHost};
  /// True when every received byte goes straight into the receive blocks,
  /// with no staging buffer on the receiving side.
  bool receives_in_place = false;
  /// The most bytes one message (one SubmitSend or SubmitRecv) may carry;
  /// UINT64_MAX when unbounded.
  uint64_t max_message_bytes = UINT64_MAX;
  /// The most staging memory one endpoint holds at once, sends and receives
  /// together, in bytes; 0 when it never stages.
  uint64_t max_staging_bytes = 0;

  bool CanRead(MemoryKind kind) const;
  bool CanWrite(MemoryKind kind) const;
};

/// One rank's endpoint of a transport. A message is identified by
/// (source rank, destination rank, task_id); both sides submit it with the
/// same task_id and the same total bytes. Buffers must stay valid until Run
/// returns. Submit + Run may be repeated (one refit per Run).
class CopyService {
 public:
  virtual ~CopyService() = default;
  /// Global rank of this endpoint.
  virtual int rank() const = 0;
  /// What this transport can do (constant for the endpoint's life).
  virtual TransportCapabilities capabilities() const = 0;
  /// Queues sending the bytes of `blocks` to `dst_rank`.
  virtual Status SubmitSend(int dst_rank, uint64_t task_id,
                            std::vector<ConstBlock> blocks) = 0;
  /// Queues receiving a message from `src_rank` straight into `blocks`.
  virtual Status SubmitRecv(int src_rank, uint64_t task_id,
                            std::vector<MutBlock> blocks) = 0;
  /// Completes every queued send and receive, then clears the queue.
  /// Errors: kDeadlineExceeded when the peers make no progress for the
  /// service's timeout (the message names this rank, the task and the peers
  /// it waited for); kFailedPrecondition when the two sides of a message
  /// disagree on its size (the message names task and ranks).
  virtual Status Run() = 0;
  /// Copies `from` into `to` within this rank (the executor's local copies
  /// of memory the transport reads and writes), returning when done. The
  /// default copies host memory with the CPU.
  virtual Status CopyLocal(std::span<const ConstBlock> from,
                           std::span<const MutBlock> to);
  /// Makes the next Run and CopyLocal start only after the work queued so
  /// far on the caller's CUDA stream `cuda_stream` (a cudaStream_t as an
  /// integer; 0 is the legacy default stream), e.g. the optimizer step that
  /// wrote the source tensors. A device transport orders its own stream
  /// after it (an event, without blocking the host where it can); the
  /// default, for transports of host memory, does nothing. Errors: CUDA's.
  virtual Status OrderAfter(uintptr_t cuda_stream);
  /// Releases the endpoint; later calls fail.
  virtual Status Close() = 0;
};

}  // namespace refit::exec

#endif  // REFIT_EXEC_COPY_SERVICE_H_
