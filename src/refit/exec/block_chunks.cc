#include "refit/exec/block_chunks.h"

#include <algorithm>

namespace refit::exec {

namespace {

// Appends blocks to the current chunk and starts a new one when it is full:
// chunk i holds size(i) bytes (the last one maybe fewer).
template <typename Block, typename Size>
class ChunkWriter {
 public:
  explicit ChunkWriter(Size size) : size_(size), room_(size_(0)), chunks_(1) {}

  uint64_t room() const { return room_; }

  // `b` must fit: run_bytes * nruns <= room().
  void Add(const Block& b) {
    chunks_.back().push_back(b);
    room_ -= b.run_bytes * b.nruns;
    if (room_ == 0) {
      room_ = size_(chunks_.size());
      chunks_.emplace_back();
    }
  }

  std::vector<std::vector<Block>> Finish() && {
    if (chunks_.size() > 1 && chunks_.back().empty()) chunks_.pop_back();
    return std::move(chunks_);
  }

 private:
  Size size_;
  uint64_t room_;
  std::vector<std::vector<Block>> chunks_;
};

template <typename Block, typename Size>
std::vector<std::vector<Block>> Split(std::span<const Block> blocks,
                                      Size size) {
  ChunkWriter<Block, Size> out(size);
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

template <typename Block>
std::vector<uint64_t> Segments(std::span<const Block> blocks) {
  std::vector<uint64_t> out;
  const std::byte* next = nullptr;
  for (const Block& b : blocks) {
    if (b.run_bytes == 0) continue;
    for (uint64_t r = 0; r < b.nruns; ++r) {
      const std::byte* run = b.base + r * b.stride;
      if (!out.empty() && run == next) {
        out.back() += b.run_bytes;
      } else {
        out.push_back(b.run_bytes);
      }
      next = run + b.run_bytes;
    }
  }
  return out;
}

template <typename Block>
std::vector<std::vector<Block>> Cut(std::span<const Block> blocks,
                                    std::span<const uint64_t> sizes) {
  if (sizes.empty()) return {{}};
  return Split(blocks, [sizes](size_t i) {
    return i < sizes.size() ? sizes[i] : ~uint64_t{0};
  });
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
  return Split(blocks, [chunk_bytes](size_t) { return chunk_bytes; });
}

std::vector<std::vector<MutBlock>> SplitBlocks(std::span<const MutBlock> blocks,
                                               uint64_t chunk_bytes) {
  return Split(blocks, [chunk_bytes](size_t) { return chunk_bytes; });
}

std::vector<uint64_t> SegmentLengths(std::span<const ConstBlock> blocks) {
  return Segments(blocks);
}

std::vector<uint64_t> SegmentLengths(std::span<const MutBlock> blocks) {
  return Segments(blocks);
}

std::vector<uint64_t> PairChunkSizes(std::span<const uint64_t> a,
                                     std::span<const uint64_t> b,
                                     uint64_t chunk_bytes,
                                     uint64_t direct_min_bytes,
                                     std::vector<uint8_t>* direct) {
  std::vector<uint64_t> out;
  if (direct != nullptr) direct->clear();
  uint64_t packed = 0;  // bytes of the chunk being grouped
  auto flush = [&] {
    if (packed > 0) {
      out.push_back(packed);
      if (direct != nullptr) direct->push_back(0);
    }
    packed = 0;
  };
  size_t i = 0, j = 0;
  uint64_t left_a = a.empty() ? 0 : a[0], left_b = b.empty() ? 0 : b[0];
  while (i < a.size() && j < b.size()) {
    // The next piece ends where the first of the two current segments ends.
    const uint64_t n = std::min(left_a, left_b);
    if (n >= direct_min_bytes) {
      flush();
      for (uint64_t at = 0; at < n; at += chunk_bytes) {
        out.push_back(std::min(chunk_bytes, n - at));
        if (direct != nullptr) direct->push_back(1);
      }
    } else if (n > 0) {
      for (uint64_t at = 0; at < n;) {  // n may exceed chunk_bytes
        if (packed == chunk_bytes) flush();
        const uint64_t take = std::min(chunk_bytes - packed, n - at);
        packed += take;
        at += take;
      }
    }
    left_a -= n;
    left_b -= n;
    if (left_a == 0 && ++i < a.size()) left_a = a[i];
    if (left_b == 0 && ++j < b.size()) left_b = b[j];
  }
  flush();
  return out;
}

std::vector<std::vector<ConstBlock>> CutBlocks(
    std::span<const ConstBlock> blocks, std::span<const uint64_t> sizes) {
  return Cut(blocks, sizes);
}

std::vector<std::vector<MutBlock>> CutBlocks(std::span<const MutBlock> blocks,
                                             std::span<const uint64_t> sizes) {
  return Cut(blocks, sizes);
}

const std::byte* ContiguousBase(std::span<const ConstBlock> blocks) {
  return Contiguous<ConstBlock, const std::byte*>(blocks);
}

std::byte* ContiguousBase(std::span<const MutBlock> blocks) {
  return Contiguous<MutBlock, std::byte*>(blocks);
}

}  // namespace refit::exec
