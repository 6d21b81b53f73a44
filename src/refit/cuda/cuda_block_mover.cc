// CudaBlockMover: block lists as 2-D copies (PlanCopies2D), one
// queued by CopyRowsAsync, whatever the memory kinds on either side.

#include "refit/cuda/copy_rows.h"
#include "refit/cuda/cuda_check.h"
#include "refit/exec/block_mover.h"
#include "refit/exec/copy_2d.h"

namespace refit::exec {

namespace {

class CudaMover final : public BlockMover {
 public:
  ~CudaMover() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  std::vector<MemoryKind> kinds() const override {
    return {MemoryKind::kHost, MemoryKind::kCuda};
  }

  Status Move(std::span<const ConstBlock> from,
              std::span<const MutBlock> to) override {
    if (stream_ == nullptr) {
      REFIT_CUDA_RETURN_IF_ERROR(
          cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
          "cuda block mover: stream");
    }
    Status queued = OkStatus();
    for (const Copy2D& c : PlanCopies2D(from, to)) {
      queued =
          cuda::CopyRowsAsync(c.dst, c.dst_pitch, c.src, c.src_pitch, c.width,
                              c.height, stream_, "cuda block mover");
      if (!queued.ok()) break;
    }
    // Also after a failed queue: no copy may outlive the call.
    REFIT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_),
                               "cuda block mover: copy");
    return queued;
  }

  // Blocks the host until the caller's stream is done: the copies of other
  // ranks' movers may read what it wrote (EmbeddedCopyService::OrderAfter).
  Status OrderAfter(uintptr_t cuda_stream) override {
    REFIT_CUDA_RETURN_IF_ERROR(
        cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(cuda_stream)),
        "cuda block mover: the caller's stream");
    return OkStatus();
  }

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace

std::unique_ptr<BlockMover> CudaBlockMover() {
  return std::make_unique<CudaMover>();
}

bool HaveCuda() { return true; }

}  // namespace refit::exec
