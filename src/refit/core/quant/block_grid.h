// Block tilings of a row-major 2-D tensor, the geometry behind every
// block-scaled format: DeepSeek-V3 / Kimi-K2 128x128 block FP8 (layouts.md
// §4.1) and MXFP8's 1x32 blocks along the last dimension (layouts.md §4.2).
// Blocks are aligned at element (0, 0); blocks on the last row / column of the
// grid may be partial. Pure: no I/O, no threads.
#ifndef REFIT_CORE_QUANT_BLOCK_GRID_H_
#define REFIT_CORE_QUANT_BLOCK_GRID_H_

#include <cstdint>

namespace refit::quant {

/// Extent of one block in elements: `rows` along dim 0, `cols` along dim 1.
/// DeepSeek-V3 weights use {128, 128} (`weight_block_size` in the HF config);
/// MXFP8 uses {1, 32}.
struct BlockShape {
  int64_t rows = 128;
  int64_t cols = 128;
};

/// Number of blocks along each dimension (the shape of the scale tensor).
struct GridShape {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t count() const { return rows * cols; }
};

/// The block grid of a row-major [n, k] tensor: {ceil(n / block.rows),
/// ceil(k / block.cols)}. Requires n, k >= 0 and block extents > 0 (callers
/// validate; a non-positive block extent gives {0, 0}).
GridShape BlockGrid(int64_t n, int64_t k, BlockShape block);

/// True when the index range [begin, end) of a dimension of length `extent`
/// cut into blocks of `block` elements holds whole blocks only: begin is a
/// block boundary and end is a block boundary or the end of the dimension
/// (the last block may be partial). An empty range (begin == end) holds no
/// partial block and gives true. False when the range is not inside
/// [0, extent] or block <= 0.
bool IsWholeBlockRange(int64_t extent, int64_t block, int64_t begin,
                       int64_t end);

/// True when the box rows [row_begin, row_end) x cols [col_begin, col_end) of
/// a row-major [n, k] tensor holds whole blocks only (IsWholeBlockRange on
/// both dimensions): r0 % B == 0 and (r1 % B == 0 or r1 == n), the same for
/// columns. This is the rule that lets a sender quantise its slice by itself:
/// when it holds, the slice's blocks are exactly the full tensor's blocks, so
/// quantising the slice gives the same data bytes and the same scales
/// (the scale rows [r0 / B, ceil(r1 / B)) and columns likewise) as quantising
/// the whole tensor and slicing. When it does not hold, a block straddles the
/// slice boundary, its amax depends on elements another rank holds, and the
/// receiver must quantise after assembling the tensor (megatron_resharding.md
/// §3.2, §3.3: Megatron assembles MXFP8 params in full before quantising).
bool HoldsWholeBlocks(int64_t n, int64_t k, BlockShape block, int64_t row_begin,
                      int64_t row_end, int64_t col_begin, int64_t col_end);

}  // namespace refit::quant

#endif  // REFIT_CORE_QUANT_BLOCK_GRID_H_
