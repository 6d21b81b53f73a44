#include "refit/core/quant/block_fp8.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "refit/core/quant/arg_checks.h"
#include "refit/core/quant/bf16_fp8_avx512.h"
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

// The magnitude bits of a `kIn` element (sign cleared): for F32, BF16 and F16
// alike they order like the magnitudes, so the block amax is an integer max.
template <DType kIn>
using MagBits = std::conditional_t<kIn == DType::kF32, uint32_t, uint16_t>;

// Magnitude bits at and above which a `kIn` element is inf or NaN.
template <DType kIn>
constexpr MagBits<kIn> kNonFiniteMag = kIn == DType::kF32    ? 0x7F800000u
                                       : kIn == DType::kBF16 ? 0x7F80u
                                                             : 0x7C00u;

// colmax[c] = max(colmax[c], |row[c]| bits) for c in [0, k): the column-wise
// running amax of a block row, reduced per block afterwards.
template <DType kIn>
REFIT_QUANT_MULTIVERSION void ColumnAmax(const std::byte* __restrict row,
                                         size_t k,
                                         MagBits<kIn>* __restrict colmax) {
  using M = MagBits<kIn>;
  constexpr M kMask =
      static_cast<M>(kIn == DType::kF32 ? 0x7FFFFFFFu : 0x7FFFu);
  for (size_t c = 0; c < k; ++c) {
    M v;
    std::memcpy(&v, row + c * sizeof(M), sizeof(M));
    v &= kMask;
    colmax[c] = colmax[c] > v ? colmax[c] : v;
  }
}

// One row of the quantised data: out[c] = E4M3(x[c] / s) for each column
// block (a block whose scale is a power of two in the normal range multiplies
// by its exact reciprocal instead, which rounds the same as the division).
template <DType kIn>
REFIT_QUANT_MULTIVERSION void QuantizeRow(const std::byte* __restrict row,
                                          int64_t k, int64_t bc,
                                          const float* __restrict scales,
                                          const float* __restrict recips,
                                          std::byte* __restrict out) {
  for (int64_t c0 = 0, gc = 0; c0 < k; c0 += bc, ++gc) {
    const size_t len = static_cast<size_t>(std::min(bc, k - c0));
    const std::byte* src =
        row + static_cast<size_t>(c0) * internal::kWideSize<kIn>;
    std::byte* dst = out + c0;
    const float r = recips[gc];
    if (r != 0.0f) {
      for (size_t j = 0; j < len; ++j) {
        dst[j] = static_cast<std::byte>(
            internal::FiniteF32ToE4M3Sat(internal::LoadF32<kIn>(src, j) * r));
      }
    } else {
      const float s = scales[gc];
      for (size_t j = 0; j < len; ++j) {
        dst[j] = static_cast<std::byte>(
            internal::FiniteF32ToE4M3Sat(internal::LoadF32<kIn>(src, j) / s));
      }
    }
  }
}

// 1 / s when s is a power of two with s and 1 / s normal F32s (then x * (1 / s)
// and x / s are the same real number, rounded the same way, also for
// subnormal results and under FTZ/DAZ); otherwise 0 (divide).
float ExactReciprocal(float s) {
  const uint32_t b = F32Bits(s);
  const uint32_t e = b >> 23;
  if ((b & 0x007FFFFFu) != 0 || e < 1 || e > 253) return 0.0f;
  return F32FromBits((254 - e) << 23);
}

template <DType kIn>
Status QuantizeImpl(const std::byte* in, int64_t n, int64_t k,
                    const BlockFp8Options& options, std::byte* data,
                    std::byte* scale_inv) {
  using M = MagBits<kIn>;
  const int64_t br = options.block.rows;
  const int64_t bc = options.block.cols;
  const GridShape grid = BlockGrid(n, k, options.block);
  const size_t row_bytes = static_cast<size_t>(k) * internal::kWideSize<kIn>;
  // Per column of the current block row, the amax magnitude bits; per column
  // block, the scale and its exact reciprocal (or 0). Allocated once per call.
  std::vector<M> colmax(static_cast<size_t>(k));
  std::vector<float> scales(static_cast<size_t>(grid.cols));
  std::vector<float> recips(static_cast<size_t>(grid.cols));
  // BF16 rows go to the AVX-512 kernel where the CPU has one (same bytes).
  auto* quantize_row = &QuantizeRow<kIn>;
  if constexpr (kIn == DType::kBF16) {
    if (internal::UseBf16Avx512()) {
      quantize_row = &internal::QuantizeBlockFp8RowBf16Avx512;
    }
  }
  for (int64_t gr = 0; gr < grid.rows; ++gr) {
    const int64_t r0 = gr * br;
    const int64_t r1 = std::min(n, r0 + br);
    std::fill(colmax.begin(), colmax.end(), M{0});
    for (int64_t r = r0; r < r1; ++r) {
      ColumnAmax<kIn>(in + static_cast<size_t>(r) * row_bytes,
                      static_cast<size_t>(k), colmax.data());
    }
    for (int64_t gc = 0; gc < grid.cols; ++gc) {
      const int64_t c0 = gc * bc;
      const int64_t c1 = std::min(k, c0 + bc);
      const M amax =
          *std::max_element(colmax.begin() + c0, colmax.begin() + c1);
      if (amax >= kNonFiniteMag<kIn>) {
        return InvalidArgument(
            "QuantizeBlockFp8: non-finite input element at " +
            FirstNonFinite<kIn>(in, k, r0, r1, c0, c1));
      }
      uint32_t amax_bits = amax;
      if constexpr (kIn == DType::kBF16) amax_bits <<= 16;
      if constexpr (kIn == DType::kF16) {
        amax_bits = internal::F16ToF32BitsBranchless(amax);
      }
      scales[gc] = BlockFp8ScaleInv(F32FromBits(amax_bits), options);
      recips[gc] = ExactReciprocal(scales[gc]);
      const size_t at = static_cast<size_t>(gr * grid.cols + gc) * 4;
      std::memcpy(scale_inv + at, &scales[gc], 4);
    }
    for (int64_t r = r0; r < r1; ++r) {
      // Finite: |x| <= amax and s > 0 is F32(amax / 448) or larger.
      quantize_row(in + static_cast<size_t>(r) * row_bytes, k, bc,
                   scales.data(), recips.data(),
                   data + static_cast<size_t>(r * k));
    }
  }
  return OkStatus();
}

// One row of the output: out[c] = E4M3ToF32(data[c]) * s of c's column block,
// stored as kOut.
template <DType kOut>
REFIT_QUANT_MULTIVERSION void DequantizeRow(const std::byte* __restrict data,
                                            int64_t k, int64_t bc,
                                            const std::byte* __restrict scales,
                                            std::byte* __restrict out) {
  for (int64_t c0 = 0, gc = 0; c0 < k; c0 += bc, ++gc) {
    const size_t len = static_cast<size_t>(std::min(bc, k - c0));
    float s;
    std::memcpy(&s, scales + static_cast<size_t>(gc) * 4, 4);
    const std::byte* src = data + c0;
    std::byte* dst = out + static_cast<size_t>(c0) * internal::kWideSize<kOut>;
    for (size_t j = 0; j < len; ++j) {
      internal::StoreF32<kOut>(
          dst, j,
          internal::DequantProduct(
              internal::E4M3ToF32Branchless(static_cast<uint8_t>(src[j])), s));
    }
  }
}

template <DType kOut>
void DequantizeImpl(const std::byte* data, const std::byte* scale_inv,
                    int64_t n, int64_t k, BlockShape block, std::byte* out) {
  const GridShape grid = BlockGrid(n, k, block);
  const size_t row_bytes = static_cast<size_t>(k) * internal::kWideSize<kOut>;
  for (int64_t r = 0; r < n; ++r) {
    DequantizeRow<kOut>(
        data + static_cast<size_t>(r * k), k, block.cols,
        scale_inv + static_cast<size_t>((r / block.rows) * grid.cols) * 4,
        out + static_cast<size_t>(r) * row_bytes);
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
