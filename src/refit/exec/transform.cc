#include "refit/exec/transform.h"

namespace refit::exec {

Result<std::vector<MutBlock>> ReshardTransform::ForwardBlocks(
    const Piece& piece) {
  return Unimplemented("transform: parameter #" +
                       std::to_string(piece.dst_param) +
                       " cannot be forwarded (no node fan-out support)");
}

Result<std::span<std::byte>> WireBuffers::Allocate(uint64_t bytes) {
  if (next_ == buffers_.size()) buffers_.emplace_back();
  KernelBuffer& b = buffers_[next_++];
  if (b.size() < bytes || b.data() == nullptr) {
    const uint64_t rounded = (bytes + 64) / 64 * 64;  // never 0
    REFIT_ASSIGN_OR_RETURN(b, kernels_->Allocate(rounded));
  }
  return std::span<std::byte>{b.data(), bytes};
}

uint64_t WireBuffers::held_bytes() const {
  uint64_t n = 0;
  for (const KernelBuffer& b : buffers_) n += b.size();
  return n;
}

}  // namespace refit::exec
