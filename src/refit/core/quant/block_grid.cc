#include "refit/core/quant/block_grid.h"

namespace refit::quant {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

GridShape BlockGrid(int64_t n, int64_t k, BlockShape block) {
  if (block.rows <= 0 || block.cols <= 0 || n < 0 || k < 0) return {};
  return {CeilDiv(n, block.rows), CeilDiv(k, block.cols)};
}

bool IsWholeBlockRange(int64_t extent, int64_t block, int64_t begin,
                       int64_t end) {
  if (block <= 0 || begin < 0 || begin > end || end > extent) return false;
  if (begin == end) return true;
  return begin % block == 0 && (end % block == 0 || end == extent);
}

bool HoldsWholeBlocks(int64_t n, int64_t k, BlockShape block, int64_t row_begin,
                      int64_t row_end, int64_t col_begin, int64_t col_end) {
  return IsWholeBlockRange(n, block.rows, row_begin, row_end) &&
         IsWholeBlockRange(k, block.cols, col_begin, col_end);
}

}  // namespace refit::quant
