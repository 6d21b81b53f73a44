// IpcMemory for ranks that are threads of one process (tests, and the CPU
// checks of the CUDA IPC copy service): host memory, whose "handle" carries
// the allocation's address itself; Open returns that address, Move copies
// with the CPU (GatherScatter).
#ifndef REFIT_TRANSPORT_CUDA_IPC_THREAD_IPC_MEMORY_H_
#define REFIT_TRANSPORT_CUDA_IPC_THREAD_IPC_MEMORY_H_

#include <cstdint>
#include <map>

#include "refit/transport/cuda_ipc/ipc_memory.h"

namespace refit::exec {

class ThreadIpcMemory final : public IpcMemory {
 public:
  /// Declares [base, base + bytes) one allocation: Export of a pointer in it
  /// gives the same handle, as CUDA does for one cudaMalloc. A pointer in no
  /// declared allocation is exported as an allocation of its own that
  /// reaches to the end of the address space. Not thread-safe; declare
  /// before the endpoint runs.
  /// Declaring a base again stands for a new allocation at the same address
  /// (freed and reallocated): it gets a new AllocationId.
  void AddAllocation(const std::byte* base, uint64_t bytes);

  std::vector<MemoryKind> kinds() const override;
  /// Errors: kInvalidArgument for nullptr.
  Result<IpcExport> Export(const std::byte* ptr) override;
  /// The declared allocation's id (1, 2, ... in declaration order); 0 for a
  /// pointer in none.
  uint64_t AllocationId(const std::byte* ptr) override;
  /// Errors: kInvalidArgument for a handle that holds no address.
  Result<std::byte*> Open(const IpcHandle& handle) override;
  /// Errors: kInvalidArgument for nullptr.
  Status CloseMapping(std::byte* base) override;
  Status Move(std::span<const ConstBlock> from,
              std::span<const MutBlock> to) override;

 private:
  struct Allocation {
    uint64_t bytes = 0;
    uint64_t id = 0;
  };
  // The declared allocation holding `ptr`, or nullptr.
  const std::pair<const std::byte* const, Allocation>* Find(
      const std::byte* ptr) const;

  std::map<const std::byte*, Allocation> allocations_;  // by base
  uint64_t last_id_ = 0;
};

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_CUDA_IPC_THREAD_IPC_MEMORY_H_
