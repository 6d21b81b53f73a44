#include "refit/exec/copy_service.h"

#include <algorithm>
#include <cstring>

#include "refit/exec/stream_copy.h"

namespace refit::exec {

namespace {

template <typename Block>
uint64_t Sum(std::span<const Block> blocks) {
  uint64_t n = 0;
  for (const Block& b : blocks) n += b.run_bytes * b.nruns;
  return n;
}

// Walks a block list run by run.
template <typename Block, typename Ptr>
class Cursor {
 public:
  explicit Cursor(std::span<const Block> blocks) : blocks_(blocks) { Skip(); }
  bool done() const { return block_ >= blocks_.size(); }
  Ptr ptr() const {
    const Block& b = blocks_[block_];
    return b.base + run_ * b.stride + offset_;
  }
  uint64_t left() const { return blocks_[block_].run_bytes - offset_; }
  void Advance(uint64_t n) {
    offset_ += n;
    if (offset_ < blocks_[block_].run_bytes) return;
    offset_ = 0;
    if (++run_ >= blocks_[block_].nruns) run_ = 0, ++block_;
    Skip();
  }

 private:
  void Skip() {
    while (block_ < blocks_.size() &&
           (blocks_[block_].run_bytes == 0 || blocks_[block_].nruns == 0)) {
      ++block_;
    }
  }
  std::span<const Block> blocks_;
  size_t block_ = 0;
  uint64_t run_ = 0;
  uint64_t offset_ = 0;
};

// True when block i of both lists has the same run structure (the executor's
// case: one block per piece on both sides), so runs map one to one.
bool SameRuns(std::span<const ConstBlock> from, std::span<const MutBlock> to) {
  if (from.size() != to.size()) return false;
  for (size_t i = 0; i < from.size(); ++i) {
    if (from[i].run_bytes != to[i].run_bytes || from[i].nruns != to[i].nruns) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool TransportCapabilities::CanRead(MemoryKind kind) const {
  return std::find(reads.begin(), reads.end(), kind) != reads.end();
}

bool TransportCapabilities::CanWrite(MemoryKind kind) const {
  return std::find(writes.begin(), writes.end(), kind) != writes.end();
}

uint64_t TotalBytes(std::span<const ConstBlock> blocks) { return Sum(blocks); }
uint64_t TotalBytes(std::span<const MutBlock> blocks) { return Sum(blocks); }

void GatherScatter(std::span<const ConstBlock> from,
                   std::span<const MutBlock> to) {
  const bool stream = TotalBytes(to) >= kStreamCopyMinBytes;
  if (stream && SameRuns(from, to)) {
    for (size_t i = 0; i < from.size(); ++i) {
      StreamCopyRuns(to[i].base, to[i].stride, from[i].base, from[i].stride,
                     from[i].run_bytes, from[i].nruns);
    }
    StreamCopyFence();
    return;
  }
  Cursor<ConstBlock, const std::byte*> in(from);
  Cursor<MutBlock, std::byte*> out(to);
  while (!in.done() && !out.done()) {
    const uint64_t n = std::min(in.left(), out.left());
    if (stream) {
      StreamCopy(out.ptr(), in.ptr(), n);
    } else {
      std::memcpy(out.ptr(), in.ptr(), n);
    }
    in.Advance(n);
    out.Advance(n);
  }
  if (stream) StreamCopyFence();
}

Status CopyService::OrderAfter(uintptr_t) { return OkStatus(); }

Status CopyService::CopyLocal(std::span<const ConstBlock> from,
                              std::span<const MutBlock> to) {
  GatherScatter(from, to);
  return OkStatus();
}

}  // namespace refit::exec
