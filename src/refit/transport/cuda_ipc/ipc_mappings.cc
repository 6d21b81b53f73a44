#include "refit/transport/cuda_ipc/ipc_mappings.h"

namespace refit::exec {

Result<std::byte*> IpcMappings::Acquire(const IpcHandle& handle) {
  auto it = open_.find(handle);
  if (it == open_.end()) {
    REFIT_ASSIGN_OR_RETURN(std::byte * base, memory_->Open(handle));
    it = open_.emplace(handle, Mapping{base, 0}).first;
  }
  ++it->second.holders;
  return it->second.base;
}

Status IpcMappings::Release(const IpcHandle& handle) {
  auto it = open_.find(handle);
  if (it == open_.end() || --it->second.holders > 0) return OkStatus();
  std::byte* base = it->second.base;
  open_.erase(it);
  return memory_->CloseMapping(base);
}

Status IpcMappings::ReleaseAll() {
  Status first;
  for (auto& [handle, mapping] : open_) {
    Status st = memory_->CloseMapping(mapping.base);
    if (first.ok()) first = std::move(st);
  }
  open_.clear();
  return first;
}

}  // namespace refit::exec
