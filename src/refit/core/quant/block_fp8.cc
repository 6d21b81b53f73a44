#include "refit/core/quant/block_fp8.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "refit/core/quant/arg_checks.h"
#include "refit/core/quant/element_access.h"
#include "refit/core/quant/float_cast.h"

namespace refit::quant {
namespace {

using internal::CheckSize;
using internal::Shape;

using internal::CheckedMul;

Status CheckGeometry(const char* fn, int64_t n, int64_t k, BlockShape block) {
  if (n < 0 || k < 0) {
    return InvalidArgument(std::string(fn) + ": negative shape " + Shape(n, k));
  }
  if (block.rows <= 0 || block.cols <= 0) {
    return InvalidArgument(std::string(fn) + ": block shape " +
                           Shape(block.rows, block.cols) + " must be positive");
  }
  if (CheckedMul(CheckedMul(n, k), 4) < 0) {
    return InvalidArgument(std::string(fn) + ": shape " + Shape(n, k) +
                           " is too large");
  }
  return OkStatus();
}

// The position of the first non-finite element of the block rows
// [r0, r1) x cols [c0, c1), for the error message.
template <DType kIn>
std::string FirstNonFinite(const std::byte* in, int64_t k, int64_t r0,
                           int64_t r1, int64_t c0, int64_t c1) {
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t c = c0; c < c1; ++c) {
      const uint32_t a =
          internal::LoadF32Bits<kIn>(in, static_cast<size_t>(r * k + c)) &
          0x7FFFFFFFu;
      if (a >= 0x7F800000u) return Shape(r, c);
    }
  }
  return "?";
}

template <DType kIn>
Status QuantizeImpl(const std::byte* in, int64_t n, int64_t k,
                    const BlockFp8Options& options, std::byte* data,
                    std::byte* scale_inv) {
  const int64_t br = options.block.rows;
  const int64_t bc = options.block.cols;
  const GridShape grid = BlockGrid(n, k, options.block);
  // Per column block of the current block row: amax as F32 bits (the
  // magnitude bits of non-negative floats order like the floats), then the
  // scale. Allocated once per call.
  std::vector<uint32_t> amax_bits(static_cast<size_t>(grid.cols));
  std::vector<float> scales(static_cast<size_t>(grid.cols));
  for (int64_t gr = 0; gr < grid.rows; ++gr) {
    const int64_t r0 = gr * br;
    const int64_t r1 = std::min(n, r0 + br);
    std::fill(amax_bits.begin(), amax_bits.end(), 0u);
    for (int64_t r = r0; r < r1; ++r) {
      const size_t row = static_cast<size_t>(r * k);
      for (int64_t gc = 0; gc < grid.cols; ++gc) {
        const int64_t c1 = std::min(k, (gc + 1) * bc);
        uint32_t m = amax_bits[gc];
        for (int64_t c = gc * bc; c < c1; ++c) {
          m = std::max(
              m, internal::LoadF32Bits<kIn>(in, row + static_cast<size_t>(c)) &
                     0x7FFFFFFFu);
        }
        amax_bits[gc] = m;
      }
    }
    for (int64_t gc = 0; gc < grid.cols; ++gc) {
      if (amax_bits[gc] >= 0x7F800000u) {
        return InvalidArgument(
            "QuantizeBlockFp8: non-finite input element at " +
            FirstNonFinite<kIn>(in, k, r0, r1, gc * bc,
                                std::min(k, (gc + 1) * bc)));
      }
      scales[gc] = BlockFp8ScaleInv(F32FromBits(amax_bits[gc]), options);
      const size_t at = static_cast<size_t>(gr * grid.cols + gc) * 4;
      std::memcpy(scale_inv + at, &scales[gc], 4);
    }
    for (int64_t r = r0; r < r1; ++r) {
      const size_t row = static_cast<size_t>(r * k);
      for (int64_t gc = 0; gc < grid.cols; ++gc) {
        const float s = scales[gc];
        const int64_t c1 = std::min(k, (gc + 1) * bc);
        for (int64_t c = gc * bc; c < c1; ++c) {
          const size_t i = row + static_cast<size_t>(c);
          // Finite: |x| <= amax and s > 0 is F32(amax / 448) or larger.
          data[i] = static_cast<std::byte>(
              internal::FiniteF32ToE4M3Sat(internal::LoadF32<kIn>(in, i) / s));
        }
      }
    }
  }
  return OkStatus();
}

template <DType kOut>
void DequantizeImpl(const std::byte* data, const std::byte* scale_inv,
                    int64_t n, int64_t k, BlockShape block, std::byte* out) {
  const GridShape grid = BlockGrid(n, k, block);
  for (int64_t r = 0; r < n; ++r) {
    const size_t row = static_cast<size_t>(r * k);
    const size_t scale_row = static_cast<size_t>((r / block.rows) * grid.cols);
    for (int64_t gc = 0; gc < grid.cols; ++gc) {
      float s;
      std::memcpy(&s, scale_inv + (scale_row + static_cast<size_t>(gc)) * 4, 4);
      const int64_t c1 = std::min(k, (gc + 1) * block.cols);
      for (int64_t c = gc * block.cols; c < c1; ++c) {
        const size_t i = row + static_cast<size_t>(c);
        internal::StoreF32<kOut>(out, i,
                                 E4M3ToF32(static_cast<uint8_t>(data[i])) * s);
      }
    }
  }
}

}  // namespace

float BlockFp8ScaleInv(float amax, const BlockFp8Options& options) {
  const float a = std::max(amax, options.min_amax);
  float s = a / kE4M3Max;
  if (options.scale_format == BlockScaleFormat::kUe8m0) {
    s = F32FromBits((F32Bits(s) + 0x007FFFFFu) & 0x7F800000u);
  }
  return s == 0.0f ? 1.0f : s;
}

Status QuantizeBlockFp8(std::span<const std::byte> in, DType in_dtype,
                        int64_t n, int64_t k, const BlockFp8Options& options,
                        std::span<std::byte> data,
                        std::span<std::byte> scale_inv) {
  constexpr const char* kFn = "QuantizeBlockFp8";
  REFIT_RETURN_IF_ERROR(CheckGeometry(kFn, n, k, options.block));
  if (!(options.min_amax >= 0.0f) || !std::isfinite(options.min_amax)) {
    return InvalidArgument(std::string(kFn) +
                           ": min_amax must be finite and >= 0, got " +
                           std::to_string(options.min_amax));
  }
  if (!internal::IsWideFloat(in_dtype)) {
    return InvalidArgument(std::string(kFn) + ": input dtype " +
                           std::string(DTypeName(in_dtype)) +
                           " is not F32, BF16 or F16");
  }
  const GridShape grid = BlockGrid(n, k, options.block);
  REFIT_RETURN_IF_ERROR(
      CheckSize(kFn, "input", in.size(),
                n * k * static_cast<int64_t>(DTypeSize(in_dtype))));
  REFIT_RETURN_IF_ERROR(CheckSize(kFn, "data", data.size(), n * k));
  REFIT_RETURN_IF_ERROR(
      CheckSize(kFn, "scale_inv", scale_inv.size(), grid.count() * 4));
  if (n == 0 || k == 0) return OkStatus();
  return internal::DispatchWideFloat(in_dtype, [&](auto tag) {
    return QuantizeImpl<decltype(tag)::value>(in.data(), n, k, options,
                                              data.data(), scale_inv.data());
  });
}

Status DequantizeBlockFp8(std::span<const std::byte> data,
                          std::span<const std::byte> scale_inv, int64_t n,
                          int64_t k, BlockShape block, std::span<std::byte> out,
                          DType out_dtype) {
  constexpr const char* kFn = "DequantizeBlockFp8";
  REFIT_RETURN_IF_ERROR(CheckGeometry(kFn, n, k, block));
  if (!internal::IsWideFloat(out_dtype)) {
    return InvalidArgument(std::string(kFn) + ": output dtype " +
                           std::string(DTypeName(out_dtype)) +
                           " is not F32, BF16 or F16");
  }
  const GridShape grid = BlockGrid(n, k, block);
  REFIT_RETURN_IF_ERROR(CheckSize(kFn, "data", data.size(), n * k));
  REFIT_RETURN_IF_ERROR(
      CheckSize(kFn, "scale_inv", scale_inv.size(), grid.count() * 4));
  REFIT_RETURN_IF_ERROR(
      CheckSize(kFn, "output", out.size(),
                n * k * static_cast<int64_t>(DTypeSize(out_dtype))));
  if (n == 0 || k == 0) return OkStatus();
  internal::DispatchWideFloat(out_dtype, [&](auto tag) {
    DequantizeImpl<decltype(tag)::value>(data.data(), scale_inv.data(), n, k,
                                         block, out.data());
    return 0;
  });
  return OkStatus();
}

}  // namespace refit::quant
