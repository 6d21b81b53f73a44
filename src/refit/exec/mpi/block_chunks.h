// Cutting a message's block list into chunks, for transports that bound their
// staging memory: each chunk is sent on its own, straight from (or into) the
// tensors when its bytes are one contiguous region, else through a staging
// buffer of at most one chunk.
#ifndef REFIT_EXEC_MPI_BLOCK_CHUNKS_H_
#define REFIT_EXEC_MPI_BLOCK_CHUNKS_H_

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

/// The first byte of `blocks` when their bytes form one contiguous region in
/// order (so they can be sent or received in place), else nullptr. nullptr
/// for a list without bytes.
const std::byte* ContiguousBase(std::span<const ConstBlock> blocks);
std::byte* ContiguousBase(std::span<const MutBlock> blocks);

}  // namespace refit::exec

#endif  // REFIT_EXEC_MPI_BLOCK_CHUNKS_H_
