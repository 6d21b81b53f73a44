// DeviceMirror of a build without CUDA: Upload says so.
#include "refit/cuda/device_mirror.h"

namespace refit::cuda {

Result<std::unique_ptr<DeviceMirror>> DeviceMirror::Upload(
    const ShardedModel&) {
  return Unimplemented(
      "--device cuda: this build of refit has no CUDA (REFIT_WITH_CUDA, "
      "nvcc not found)");
}

DeviceMirror::~DeviceMirror() = default;

Status DeviceMirror::Download(const ShardedModel&) const {
  return Unimplemented("no CUDA");
}

Status DeviceMirror::OverwriteFrom(const DeviceMirror&) {
  return Unimplemented("no CUDA");
}

}  // namespace refit::cuda
