// What the CUDA IPC copy service needs from device memory: exporting the
// allocation behind a receive buffer as an opaque handle, mapping a peer's
// handle into this process, and moving blocks into the mapped memory. The
// CUDA implementation (CudaIpcMemory, cuda_ipc_memory.cc) wraps the CUDA
// runtime's legacy IPC calls; ThreadIpcMemory (thread_ipc_memory.h) stands in
// for it when the ranks are threads of one process, so the service is tested
// without a GPU.
#ifndef REFIT_TRANSPORT_CUDA_IPC_IPC_MEMORY_H_
#define REFIT_TRANSPORT_CUDA_IPC_IPC_MEMORY_H_

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "refit/core/memory_kind.h"
#include "refit/core/status.h"
#include "refit/exec/copy_service.h"

namespace refit::exec {

/// An exported allocation, as another process (or thread) opens it: 64
/// opaque bytes, the size of cudaIpcMemHandle_t (CUDA_IPC_HANDLE_SIZE).
struct IpcHandle {
  static constexpr size_t kBytes = 64;
  std::array<std::byte, kBytes> bytes{};
  auto operator<=>(const IpcHandle&) const = default;
};

/// Where a pointer lies in an exported allocation.
struct IpcExport {
  IpcHandle handle;
  /// Bytes from the allocation's base to the pointer.
  uint64_t offset = 0;
  /// Bytes of the allocation from its base; a block written through the
  /// handle must end within them.
  uint64_t allocation_bytes = 0;
};

/// Device memory as the CUDA IPC copy service uses it. One instance per
/// endpoint, used from one thread at a time.
class IpcMemory {
 public:
  virtual ~IpcMemory() = default;
  /// The memory kinds Export and Open work on and Move reads and writes.
  virtual std::vector<MemoryKind> kinds() const = 0;
  /// The handle of the allocation holding `ptr`, and `ptr`'s place in it.
  /// Errors: kInvalidArgument naming `ptr` when its memory cannot be
  /// exported (host memory; CUDA allocations made with cuMemCreate (VMM),
  /// e.g. PyTorch's expandable segments, are not legacy-IPC capable);
  /// kInternal for an error of the runtime.
  virtual Result<IpcExport> Export(const std::byte* ptr) = 0;
  /// An id of the allocation holding `ptr`, unique among this process's
  /// allocations for its life (CUDA: CU_POINTER_ATTRIBUTE_BUFFER_ID), so a
  /// tensor freed and reallocated at the same address is told apart; 0 for
  /// memory without one. An unchanged manifest is reused only while its
  /// blocks' ids stay.
  virtual uint64_t AllocationId(const std::byte* ptr) = 0;
  /// This rank's tensors live on the device of `local` (CUDA: its
  /// CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL): Open, Move and CloseMapping run
  /// there from now on, whatever device the calling thread has current (no
  /// context on another GPU). The first call with device memory decides.
  virtual void UseDeviceOf(const std::byte* /*local*/) {}
  /// The base of the allocation `handle` names, mapped into this process;
  /// valid until CloseMapping (one CloseMapping per successful Open: the
  /// CUDA runtime API docs of cudaIpcOpenMemHandle count the opens of a
  /// handle per context). CUDA maps handles exported by other processes
  /// only.
  /// Errors: kInvalidArgument for a handle that cannot be opened here,
  /// kInternal for an error of the runtime.
  virtual Result<std::byte*> Open(const IpcHandle& handle) = 0;
  /// Unmaps a base Open returned. Errors: kInternal from the runtime.
  virtual Status CloseMapping(std::byte* base) = 0;
  /// Copies the bytes of `from` (in order) into those of `to` (in order; the
  /// same total), either side local or mapped, and returns when they have
  /// landed. Errors: the copy engine's, as kInternal.
  virtual Status Move(std::span<const ConstBlock> from,
                      std::span<const MutBlock> to) = 0;
  /// Returns once the work queued so far on the caller's CUDA stream has
  /// finished (CopyService::OrderAfter): a sender's copy reads its source
  /// tensors and writes its peers' on its own stream, so both sides wait on
  /// the host before the Run. Host memory: nothing to do.
  virtual Status OrderAfter(uintptr_t /*cuda_stream*/) { return OkStatus(); }
};

/// The CUDA runtime's IpcMemory: cudaIpcGetMemHandle of the allocation's base
/// (found with the driver's CU_POINTER_ATTRIBUTE_RANGE_START_ADDR),
/// cudaIpcOpenMemHandle with cudaIpcMemLazyEnablePeerAccess,
/// cudaIpcCloseMemHandle, and Moves as 2-D copies on a stream of its own
/// (exec::CudaBlockMover), on the device UseDeviceOf found (else the calling
/// thread's current device).
/// kinds(): kCuda. Errors: kUnimplemented when this build of refit has no
/// CUDA.
Result<std::unique_ptr<IpcMemory>> CudaIpcMemory();

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_CUDA_IPC_IPC_MEMORY_H_
