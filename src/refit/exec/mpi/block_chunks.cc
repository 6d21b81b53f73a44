#include "refit/exec/mpi/block_chunks.h"

#include <algorithm>

namespace refit::exec {

namespace {

// Appends blocks to the current chunk and starts a new one when it is full.
template <typename Block>
class ChunkWriter {
 public:
  explicit ChunkWriter(uint64_t chunk_bytes)
      : chunk_bytes_(chunk_bytes), room_(chunk_bytes), chunks_(1) {}

  uint64_t room() const { return room_; }

  // `b` must fit: run_bytes * nruns <= room().
  void Add(const Block& b) {
    chunks_.back().push_back(b);
    room_ -= b.run_bytes * b.nruns;
    if (room_ == 0) {
      chunks_.emplace_back();
      room_ = chunk_bytes_;
    }
  }

  std::vector<std::vector<Block>> Finish() && {
    if (chunks_.size() > 1 && chunks_.back().empty()) chunks_.pop_back();
    return std::move(chunks_);
  }

 private:
  uint64_t chunk_bytes_;
  uint64_t room_;
  std::vector<std::vector<Block>> chunks_;
};

template <typename Block>
std::vector<std::vector<Block>> Split(std::span<const Block> blocks,
                                      uint64_t chunk_bytes) {
  ChunkWriter<Block> out(chunk_bytes);
  for (Block b : blocks) {
    if (b.run_bytes == 0) continue;
    while (b.nruns > 0) {
      const uint64_t whole = std::min(b.nruns, out.room() / b.run_bytes);
      if (whole > 0) {  // as many whole runs as fit
        out.Add({b.base, b.run_bytes, whole, b.stride});
        b.base += whole * b.stride;
        b.nruns -= whole;
        continue;
      }
      // The next run does not fit: cut it over as many chunks as it needs.
      for (uint64_t at = 0; at < b.run_bytes;) {
        const uint64_t n = std::min(out.room(), b.run_bytes - at);
        out.Add({b.base + at, n, 1, n});
        at += n;
      }
      b.base += b.stride;
      --b.nruns;
    }
  }
  return std::move(out).Finish();
}

template <typename Block, typename Ptr>
Ptr Contiguous(std::span<const Block> blocks) {
  Ptr first = nullptr;
  Ptr next = nullptr;
  for (const Block& b : blocks) {
    if (b.run_bytes == 0 || b.nruns == 0) continue;
    if (b.nruns > 1 && b.stride != b.run_bytes) return nullptr;
    if (first == nullptr) {
      first = b.base;
    } else if (b.base != next) {
      return nullptr;
    }
    next = b.base + b.run_bytes * b.nruns;
  }
  return first;
}

}  // namespace

std::vector<std::vector<ConstBlock>> SplitBlocks(
    std::span<const ConstBlock> blocks, uint64_t chunk_bytes) {
  return Split(blocks, chunk_bytes);
}

std::vector<std::vector<MutBlock>> SplitBlocks(std::span<const MutBlock> blocks,
                                               uint64_t chunk_bytes) {
  return Split(blocks, chunk_bytes);
}

const std::byte* ContiguousBase(std::span<const ConstBlock> blocks) {
  return Contiguous<ConstBlock, const std::byte*>(blocks);
}

std::byte* ContiguousBase(std::span<const MutBlock> blocks) {
  return Contiguous<MutBlock, std::byte*>(blocks);
}

}  // namespace refit::exec
