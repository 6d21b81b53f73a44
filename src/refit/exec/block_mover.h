// How a transport (and the executor's local copies) moves blocks of bytes:
// host memcpy, or CUDA copies for tensors in device memory. One mover per
// rank; a transport built on a mover reads and writes the memory kinds the
// mover declares.
#ifndef REFIT_EXEC_BLOCK_MOVER_H_
#define REFIT_EXEC_BLOCK_MOVER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "refit/core/memory_kind.h"
#include "refit/core/status.h"
#include "refit/exec/copy_service.h"

namespace refit::exec {

class BlockMover {
 public:
  virtual ~BlockMover() = default;
  /// The memory kinds Move reads from and writes into.
  virtual std::vector<MemoryKind> kinds() const = 0;
  /// Copies the bytes of `from` (in order) into those of `to` (in order; the
  /// same total) and returns when they have landed.
  /// Errors: the copy engine's (CUDA errors, named, as kInternal).
  virtual Status Move(std::span<const ConstBlock> from,
                      std::span<const MutBlock> to) = 0;
  /// The next Move starts after the work queued so far on `cuda_stream`
  /// (CopyService::OrderAfter). Host movers: nothing to do.
  virtual Status OrderAfter(uintptr_t /*cuda_stream*/) { return OkStatus(); }
};

/// Host memory, copied by the CPU (GatherScatter).
std::unique_ptr<BlockMover> HostBlockMover();

/// Host and CUDA memory (any pointer CUDA's unified addressing knows),
/// copied with cudaMemcpy2DAsync on a stream of the mover's own (created on
/// the current device at the first Move) and synchronised before Move
/// returns. Built without CUDA, every Move fails with kUnimplemented.
std::unique_ptr<BlockMover> CudaBlockMover();

/// True when this build of refit has the CUDA parts.
bool HaveCuda();

}  // namespace refit::exec

#endif  // REFIT_EXEC_BLOCK_MOVER_H_
