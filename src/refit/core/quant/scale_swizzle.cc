#include "refit/core/quant/scale_swizzle.h"

#include <algorithm>
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

Status Swizzle128x4(std::span<const std::byte> in, int64_t rows, int64_t cols,
                    std::span<std::byte> out) {
  REFIT_RETURN_IF_ERROR(
      CheckSwizzleArgs("Swizzle128x4", rows, cols, in.size(), out.size()));
  std::fill(out.begin(), out.end(), std::byte{0});
  for (int64_t r = 0; r < rows; ++r) {
    const std::byte* src = in.data() + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      out[static_cast<size_t>(Swizzled128x4Offset(r, c, cols))] = src[c];
    }
  }
  return OkStatus();
}

Status Unswizzle128x4(std::span<const std::byte> in, int64_t rows, int64_t cols,
                      std::span<std::byte> out) {
  REFIT_RETURN_IF_ERROR(
      CheckSwizzleArgs("Unswizzle128x4", rows, cols, out.size(), in.size()));
  for (int64_t r = 0; r < rows; ++r) {
    std::byte* dst = out.data() + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      dst[c] = in[static_cast<size_t>(Swizzled128x4Offset(r, c, cols))];
    }
  }
  return OkStatus();
}

}  // namespace refit::quant
