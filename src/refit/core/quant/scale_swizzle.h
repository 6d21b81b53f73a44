// The cuBLAS / FlashInfer "128x4" blocked layout of block-scale factors
// (layouts.md §4.2; Megatron megatron/core/inference/quantization/
// mxfp8_quantize.py kernel docstring; TE nvte_swizzle_scaling_factors). A
// row-major [rows, cols] matrix of one-byte scales (MXFP8: rows = M,
// cols = K / 32) is padded with zero bytes to multiples of 128 rows x 4 columns
// and stored as 512-byte tiles, tile after tile in row-major tile order. Inside
// a tile, rows r, r + 32, r + 64 and r + 96 sit next to each other:
//   tile   = (row / 128) * ceil(cols / 4) + col / 4
//   offset = tile * 512 + (row % 32) * 16 + ((row % 128) / 32) * 4 + col % 4
// Pure: no I/O, no threads.
#ifndef REFIT_CORE_QUANT_SCALE_SWIZZLE_H_
#define REFIT_CORE_QUANT_SCALE_SWIZZLE_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "refit/core/status.h"

namespace refit::quant {

/// Bytes of the swizzled layout of a [rows, cols] scale matrix:
/// ceil(rows / 128) * 128 * ceil(cols / 4) * 4. Requires rows, cols >= 0.
int64_t Swizzled128x4Bytes(int64_t rows, int64_t cols);

/// Byte offset of scale (row, col) in the swizzled layout of a matrix with
/// `cols` columns (formula above). Requires 0 <= row, 0 <= col < cols.
constexpr int64_t Swizzled128x4Offset(int64_t row, int64_t col, int64_t cols) {
  const int64_t tile = (row / 128) * ((cols + 3) / 4) + col / 4;
  return tile * 512 + (row % 32) * 16 + ((row % 128) / 32) * 4 + col % 4;
}

/// Writes the row-major [rows, cols] byte matrix `in` into `out` in the
/// 128x4 swizzled layout; padding bytes are 0.
/// Errors (kInvalidArgument): rows or cols < 0; in.size() != rows * cols;
/// out.size() != Swizzled128x4Bytes(rows, cols). Spans must not overlap.
Status Swizzle128x4(std::span<const std::byte> in, int64_t rows, int64_t cols,
                    std::span<std::byte> out);

/// The inverse of Swizzle128x4: reads the [rows, cols] matrix back out of the
/// swizzled bytes `in` (padding ignored) into row-major `out`.
/// Errors (kInvalidArgument): rows or cols < 0;
/// in.size() != Swizzled128x4Bytes(rows, cols); out.size() != rows * cols.
Status Unswizzle128x4(std::span<const std::byte> in, int64_t rows, int64_t cols,
                      std::span<std::byte> out);

}  // namespace refit::quant

#endif  // REFIT_CORE_QUANT_SCALE_SWIZZLE_H_
