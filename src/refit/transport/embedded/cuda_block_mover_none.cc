// CudaBlockMover of a build without CUDA: it says so at the first Move.
#include "refit/exec/block_mover.h"

namespace refit::exec {

namespace {

class NoCudaMover final : public BlockMover {
 public:
  std::vector<MemoryKind> kinds() const override {
    return {MemoryKind::kHost, MemoryKind::kCuda};
  }
  Status Move(std::span<const ConstBlock>, std::span<const MutBlock>) override {
    return Unimplemented(
        "cuda memory: this build of refit has no CUDA (REFIT_WITH_CUDA, "
        "nvcc not found)");
  }
};

}  // namespace

std::unique_ptr<BlockMover> CudaBlockMover() {
  return std::make_unique<NoCudaMover>();
}

bool HaveCuda() { return false; }

}  // namespace refit::exec
