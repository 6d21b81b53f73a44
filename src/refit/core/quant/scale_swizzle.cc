#include "refit/core/quant/scale_swizzle.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "refit/core/quant/element_access.h"

namespace refit::quant {
namespace {

int64_t RoundUp(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

Status CheckSwizzleArgs(const char* fn, int64_t rows, int64_t cols,
                        size_t plain_bytes, size_t swizzled_bytes) {
  // Built by appending: GCC 12 warns falsely (-Wrestrict) on
  // "literal" + std::string.
  std::string shape = "[";
  shape += std::to_string(rows);
  shape += ", ";
  shape += std::to_string(cols);
  shape += "]";
  if (rows < 0 || cols < 0 ||
      internal::CheckedMul(RoundUp(rows, 128), RoundUp(cols, 4)) < 0) {
    return InvalidArgument(std::string(fn) + ": bad scale shape " + shape);
  }
  if (plain_bytes != static_cast<size_t>(rows * cols)) {
    return InvalidArgument(std::string(fn) + ": row-major scales of shape " +
                           shape + " need " + std::to_string(rows * cols) +
                           " bytes, got " + std::to_string(plain_bytes));
  }
  const int64_t want = Swizzled128x4Bytes(rows, cols);
  if (swizzled_bytes != static_cast<size_t>(want)) {
    return InvalidArgument(std::string(fn) + ": swizzled scales of shape " +
                           shape + " need " + std::to_string(want) +
                           " bytes, got " + std::to_string(swizzled_bytes));
  }
  return OkStatus();
}

}  // namespace

int64_t Swizzled128x4Bytes(int64_t rows, int64_t cols) {
  return RoundUp(rows, 128) * RoundUp(cols, 4);
}

namespace {

// Copies between the row-major matrix and the swizzled tiles, tile by tile
// (the swizzled side in order). Inside a tile, the 16 bytes at i * 16 hold
// 4-byte runs of rows i, i + 32, i + 64 and i + 96, each the tile's 4
// columns. kToSwizzled: `src` is row-major and `dst` swizzled, padding bytes
// are written as 0; otherwise the reverse, padding skipped.
template <bool kToSwizzled>
void CopyTiles(const std::byte* __restrict src, int64_t rows, int64_t cols,
               std::byte* __restrict dst) {
  const int64_t tile_cols = (cols + 3) / 4;
  for (int64_t r0 = 0; r0 < rows; r0 += 128) {
    const bool full_rows = r0 + 128 <= rows;
    for (int64_t t = 0; t < tile_cols; ++t) {
      const int64_t c0 = t * 4;
      const int64_t width = std::min<int64_t>(4, cols - c0);
      const int64_t tile = ((r0 / 128) * tile_cols + t) * 512;
      for (int64_t i = 0; i < 32; ++i) {
        for (int64_t g = 0; g < 4; ++g) {
          const int64_t r = r0 + g * 32 + i;
          const size_t plain = static_cast<size_t>(r * cols + c0);
          const size_t swz = static_cast<size_t>(tile + i * 16 + g * 4);
          if (full_rows && width == 4) {  // the common case: 4 bytes
            std::memcpy(dst + (kToSwizzled ? swz : plain),
                        src + (kToSwizzled ? plain : swz), 4);
            continue;
          }
          for (int64_t j = 0; j < 4; ++j) {
            const bool inside = r < rows && j < width;
            if constexpr (kToSwizzled) {
              dst[swz + j] = inside ? src[plain + j] : std::byte{0};
            } else if (inside) {
              dst[plain + j] = src[swz + j];
            }
          }
        }
      }
    }
  }
}

}  // namespace

Status Swizzle128x4(std::span<const std::byte> in, int64_t rows, int64_t cols,
                    std::span<std::byte> out) {
  REFIT_RETURN_IF_ERROR(
      CheckSwizzleArgs("Swizzle128x4", rows, cols, in.size(), out.size()));
  CopyTiles<true>(in.data(), rows, cols, out.data());
  return OkStatus();
}

Status Unswizzle128x4(std::span<const std::byte> in, int64_t rows, int64_t cols,
                      std::span<std::byte> out) {
  REFIT_RETURN_IF_ERROR(
      CheckSwizzleArgs("Unswizzle128x4", rows, cols, out.size(), in.size()));
  CopyTiles<false>(in.data(), rows, cols, out.data());
  return OkStatus();
}

}  // namespace refit::quant
