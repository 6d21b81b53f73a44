#include "refit/transport/cuda_ipc/thread_ipc_memory.h"

#include <cstring>

namespace refit::exec {

void ThreadIpcMemory::AddAllocation(const std::byte* base, uint64_t bytes) {
  allocations_[base] = {bytes, ++last_id_};
}

const std::pair<const std::byte* const, ThreadIpcMemory::Allocation>*
ThreadIpcMemory::Find(const std::byte* ptr) const {
  auto it = allocations_.upper_bound(ptr);
  if (it == allocations_.begin()) return nullptr;
  --it;
  return static_cast<uint64_t>(ptr - it->first) < it->second.bytes ? &*it
                                                                   : nullptr;
}

uint64_t ThreadIpcMemory::AllocationId(const std::byte* ptr) {
  const auto* found = Find(ptr);
  return found == nullptr ? 0 : found->second.id;
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
  if (const auto* found = Find(ptr)) {
    base = found->first;
    bytes = found->second.bytes;
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
