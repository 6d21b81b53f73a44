#include "refit/exec/transform.h"

#include <cstdlib>
#include <new>

namespace refit::exec {

Result<std::vector<MutBlock>> ReshardTransform::ForwardBlocks(
    const Piece& piece) {
  return Unimplemented("transform: parameter #" +
                       std::to_string(piece.dst_param) +
                       " cannot be forwarded (no node fan-out support)");
}

void WireBuffers::Free::operator()(std::byte* p) const { std::free(p); }

std::span<std::byte> WireBuffers::Allocate(uint64_t bytes) {
  if (next_ == buffers_.size()) buffers_.emplace_back();
  Buffer& b = buffers_[next_++];
  if (b.bytes < bytes) {
    const uint64_t rounded = (bytes + 64) / 64 * 64;  // never 0
    auto* p = static_cast<std::byte*>(std::aligned_alloc(64, rounded));
    if (p == nullptr) throw std::bad_alloc();
    b.data.reset(p);
    b.bytes = rounded;
  }
  return {b.data.get(), bytes};
}

uint64_t WireBuffers::held_bytes() const {
  uint64_t n = 0;
  for (const Buffer& b : buffers_) n += b.bytes;
  return n;
}

}  // namespace refit::exec
