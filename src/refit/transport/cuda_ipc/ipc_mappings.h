// A sender's mappings of its receivers' exported allocations, shared by the
// manifests that name them: a handle is opened (IpcMemory::Open) when a
// manifest first names it and closed when no held manifest names it any
// more, so a refit whose manifests did not change opens nothing.
#ifndef REFIT_TRANSPORT_CUDA_IPC_IPC_MAPPINGS_H_
#define REFIT_TRANSPORT_CUDA_IPC_IPC_MAPPINGS_H_

#include <cstddef>
#include <map>

#include "refit/core/status.h"
#include "refit/transport/cuda_ipc/ipc_memory.h"

namespace refit::exec {

class IpcMappings {
 public:
  /// `memory` (not owned) opens and closes the mappings; it outlives this.
  explicit IpcMappings(IpcMemory* memory) : memory_(memory) {}
  ~IpcMappings() { (void)ReleaseAll(); }
  IpcMappings(const IpcMappings&) = delete;
  IpcMappings& operator=(const IpcMappings&) = delete;

  /// The mapped base of `handle`, opened on its first acquisition; counts
  /// one more holder. Errors: IpcMemory::Open's.
  Result<std::byte*> Acquire(const IpcHandle& handle);
  /// Drops one holder of `handle`; the last closes the mapping. Unknown
  /// handles are ignored. Errors: IpcMemory::CloseMapping's.
  Status Release(const IpcHandle& handle);
  /// Closes every mapping. Errors: the first CloseMapping error.
  Status ReleaseAll();
  /// Mappings open now.
  size_t size() const { return open_.size(); }

 private:
  struct Mapping {
    std::byte* base = nullptr;
    int holders = 0;
  };
  IpcMemory* memory_;
  std::map<IpcHandle, Mapping> open_;
};

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_CUDA_IPC_IPC_MAPPINGS_H_
