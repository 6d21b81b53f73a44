// Cutting a message's block list into chunks, for transports that bound their
// staging memory: each chunk is sent on its own, straight from (or into) the
// tensors when its bytes are one contiguous region, else through a staging
// buffer of at most one chunk.
#ifndef REFIT_EXEC_BLOCK_CHUNKS_H_
#define REFIT_EXEC_BLOCK_CHUNKS_H_

#include <cstdint>
#include <span>
#include <vector>

#include "refit/exec/copy_service.h"

namespace refit::exec {

/// Splits the bytes of `blocks` (in order) into chunks of `chunk_bytes` bytes,
/// the last one shorter: ceil(total / chunk_bytes) lists, or one empty list
/// when the blocks hold no bytes. Runs that straddle a chunk boundary are cut.
/// Sender and receiver of one message get the same chunk sizes whatever their
/// block structure. `chunk_bytes` must be > 0.
std::vector<std::vector<ConstBlock>> SplitBlocks(
    std::span<const ConstBlock> blocks, uint64_t chunk_bytes);
std::vector<std::vector<MutBlock>> SplitBlocks(std::span<const MutBlock> blocks,
                                               uint64_t chunk_bytes);

/// The lengths in bytes of the contiguous regions `blocks` describe, in
/// order: every run, with runs that follow each other in memory merged into
/// one region (also across blocks). Empty runs are skipped.
std::vector<uint64_t> SegmentLengths(std::span<const ConstBlock> blocks);
std::vector<uint64_t> SegmentLengths(std::span<const MutBlock> blocks);

/// Chunk sizes for a message whose sender and receiver describe its bytes
/// with segment lengths `a` and `b` (SegmentLengths of each side; their sums
/// must be equal). The message is cut wherever either side's segment ends:
/// each resulting piece is contiguous on both sides. Pieces of at least
/// `direct_min_bytes` become chunks of their own (cut at `chunk_bytes`), to
/// be sent in place; runs of smaller pieces are grouped into chunks of at
/// most `chunk_bytes`, to be packed. The result depends only on the two
/// lists, not on which side computes it. `chunk_bytes` must be > 0. With
/// `direct`, (*direct)[i] is set to 1 for the chunks of large pieces (in
/// place on both sides) and 0 for grouped ones.
std::vector<uint64_t> PairChunkSizes(std::span<const uint64_t> a,
                                     std::span<const uint64_t> b,
                                     uint64_t chunk_bytes,
                                     uint64_t direct_min_bytes,
                                     std::vector<uint8_t>* direct = nullptr);

/// Splits the bytes of `blocks` (in order) into consecutive chunks of
/// `sizes[i]` bytes; runs that straddle a boundary are cut. The sizes must
/// sum to TotalBytes(blocks); zero sizes are not allowed.
std::vector<std::vector<ConstBlock>> CutBlocks(
    std::span<const ConstBlock> blocks, std::span<const uint64_t> sizes);
std::vector<std::vector<MutBlock>> CutBlocks(std::span<const MutBlock> blocks,
                                             std::span<const uint64_t> sizes);

/// The first byte of `blocks` when their bytes form one contiguous region in
/// order (so they can be sent or received in place), else nullptr. nullptr
/// for a list without bytes.
const std::byte* ContiguousBase(std::span<const ConstBlock> blocks);
std::byte* ContiguousBase(std::span<const MutBlock> blocks);

}  // namespace refit::exec

#endif  // REFIT_EXEC_BLOCK_CHUNKS_H_
