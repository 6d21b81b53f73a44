#include "refit/cuda/device_mirror.h"

#include <algorithm>

#include "refit/cuda/cuda_check.h"

namespace refit::cuda {

Result<std::unique_ptr<DeviceMirror>> DeviceMirror::Upload(
    const ShardedModel& host) {
  std::unique_ptr<DeviceMirror> m(new DeviceMirror);
  m->model_ =
      ShardedModel{host.spec, host.layout, host.rank, host.world_size, {}};
  for (const auto& [name, view] : host.tensors) {
    const uint64_t n = view.nbytes();
    void* d = nullptr;
    REFIT_CUDA_RETURN_IF_ERROR(cudaMalloc(&d, std::max<uint64_t>(n, 1)),
                               "device copy of " + name);
    m->buffers_.emplace_back(d, n);
    m->bytes_ += n;
    REFIT_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(d, view.data, n, cudaMemcpyHostToDevice),
        "device copy of " + name);
    TensorView v = view;
    v.data = d;
    v.memory = MemoryKind::kCuda;
    m->model_.tensors[name] = std::move(v);
  }
  return m;
}

DeviceMirror::~DeviceMirror() {
  for (auto& [d, n] : buffers_) cudaFree(d);
}

Status DeviceMirror::Download(const ShardedModel& host) const {
  for (const auto& [name, view] : host.tensors) {
    auto it = model_.tensors.find(name);
    if (it == model_.tensors.end()) {
      return Internal("device mirror: no device copy of " + name);
    }
    REFIT_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(view.data, it->second.data, view.nbytes(),
                   cudaMemcpyDeviceToHost),
        "copy back of " + name);
  }
  return OkStatus();
}

Status DeviceMirror::OverwriteFrom(const DeviceMirror& src) {
  if (src.bytes_ == 0) return OkStatus();
  size_t from = 0;
  uint64_t at = 0;
  for (auto& [d, n] : buffers_) {
    uint64_t done = 0;
    while (done < n) {
      while (at == src.buffers_[from].second) {
        from = (from + 1) % src.buffers_.size();
        at = 0;
      }
      const uint64_t k = std::min(n - done, src.buffers_[from].second - at);
      REFIT_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(
              static_cast<std::byte*>(d) + done,
              static_cast<const std::byte*>(src.buffers_[from].first) + at, k,
              cudaMemcpyDeviceToDevice),
          "device baseline copy");
      done += k;
      at += k;
    }
  }
  REFIT_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize(), "device baseline copy");
  return OkStatus();
}

}  // namespace refit::cuda
