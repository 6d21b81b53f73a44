// Device copies of a model's host tensors, for harnesses that hold their
// tensors on the host and refit them on a GPU (`refit run --device cuda`).
// No CUDA header here: a build without CUDA links a version whose Upload
// fails with kUnimplemented.
#ifndef REFIT_CUDA_DEVICE_MIRROR_H_
#define REFIT_CUDA_DEVICE_MIRROR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "refit/core/status.h"
#include "refit/sharded_model.h"

namespace refit::cuda {

class DeviceMirror {
 public:
  /// One device allocation per tensor of `host` (host-memory views), filled
  /// from it, on the current device. Errors: kUnimplemented without CUDA;
  /// kInternal for CUDA errors (named: out of memory, no device).
  static Result<std::unique_ptr<DeviceMirror>> Upload(const ShardedModel& host);
  ~DeviceMirror();
  DeviceMirror(const DeviceMirror&) = delete;
  DeviceMirror& operator=(const DeviceMirror&) = delete;

  /// `host`'s model over the device copies (views of MemoryKind kCuda).
  const ShardedModel& model() const { return model_; }
  /// Copies the device tensors back into `host`'s views (same names).
  Status Download(const ShardedModel& host) const;
  /// Fills every device tensor from `src`'s device bytes, in order, cycling
  /// through them (a device-to-device copy of this model's bytes: the
  /// memcpy baseline of a device refit). Synchronises.
  Status OverwriteFrom(const DeviceMirror& src);
  /// Bytes held on the device.
  uint64_t bytes() const { return bytes_; }

 private:
  DeviceMirror() = default;
  ShardedModel model_;
  std::vector<std::pair<void*, uint64_t>> buffers_;
  uint64_t bytes_ = 0;
};

}  // namespace refit::cuda

#endif  // REFIT_CUDA_DEVICE_MIRROR_H_
