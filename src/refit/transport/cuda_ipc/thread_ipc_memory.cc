#include "refit/transport/cuda_ipc/thread_ipc_memory.h"

#include <cstring>

namespace refit::exec {

void ThreadIpcMemory::AddAllocation(const std::byte* base, uint64_t bytes) {
  allocations_[base] = bytes;
}

std::vector<MemoryKind> ThreadIpcMemory::kinds() const {
  return {MemoryKind::kHost};
}

Result<IpcExport> ThreadIpcMemory::Export(const std::byte* ptr) {
  if (ptr == nullptr) {
    return InvalidArgument("thread ipc memory: cannot export a null pointer");
  }
  const std::byte* base = ptr;
  uint64_t bytes = UINTPTR_MAX - reinterpret_cast<uintptr_t>(ptr) + 1;
  auto it = allocations_.upper_bound(ptr);
  if (it != allocations_.begin()) {
    --it;
    const uint64_t offset = static_cast<uint64_t>(ptr - it->first);
    if (offset < it->second) base = it->first, bytes = it->second;
  }
  IpcExport out;
  std::memcpy(out.handle.bytes.data(), &base, sizeof(base));
  out.offset = static_cast<uint64_t>(ptr - base);
  out.allocation_bytes = bytes;
  return out;
}

Result<std::byte*> ThreadIpcMemory::Open(const IpcHandle& handle) {
  std::byte* base = nullptr;
  std::memcpy(&base, handle.bytes.data(), sizeof(base));
  if (base == nullptr) {
    return InvalidArgument("thread ipc memory: the handle holds no address");
  }
  return base;
}

Status ThreadIpcMemory::CloseMapping(std::byte* base) {
  if (base == nullptr) {
    return InvalidArgument("thread ipc memory: closing a null mapping");
  }
  return OkStatus();
}

Status ThreadIpcMemory::Move(std::span<const ConstBlock> from,
                             std::span<const MutBlock> to) {
  if (TotalBytes(from) != TotalBytes(to)) {
    return Internal("thread ipc memory: moving " +
                    std::to_string(TotalBytes(from)) + " bytes into " +
                    std::to_string(TotalBytes(to)));
  }
  GatherScatter(from, to);
  return OkStatus();
}

}  // namespace refit::exec
