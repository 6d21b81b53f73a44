#include "refit/core/quant/mxfp8.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "refit/core/quant/arg_checks.h"
#include "refit/core/quant/bf16_fp8_avx512.h"
#include "refit/core/quant/element_access.h"

namespace refit::quant {
namespace {

using internal::CheckSize;
using internal::Shape;

Status CheckShape(const char* fn, int64_t m, int64_t k) {
  if (m < 0 || k < 0 ||
      internal::CheckedMul(internal::CheckedMul(m, k), 4) < 0) {
    return InvalidArgument(std::string(fn) + ": bad shape " + Shape(m, k));
  }
  if (k % kMxfp8BlockSize != 0) {
    return InvalidArgument(std::string(fn) + ": K = " + std::to_string(k) +
                           " is not a multiple of the MXFP8 block size 32");
  }
  return OkStatus();
}

// The magnitude bits of a `kIn` element (sign cleared): for F32, BF16 and F16
// alike they order like the magnitudes, so a block amax is an integer max.
template <DType kIn>
using MagBits = std::conditional_t<kIn == DType::kF32, uint32_t, uint16_t>;

// amax[b] = the largest magnitude bits of block b of one row (k / 32 blocks),
// as F32 bits; returns the largest of them (to test for non-finite input).
template <DType kIn>
REFIT_QUANT_MULTIVERSION uint32_t RowBlockAmax(const std::byte* __restrict row,
                                               size_t blocks,
                                               uint32_t* __restrict amax) {
  using M = MagBits<kIn>;
  constexpr M kMask =
      static_cast<M>(kIn == DType::kF32 ? 0x7FFFFFFFu : 0x7FFFu);
  uint32_t row_max = 0;
  for (size_t b = 0; b < blocks; ++b) {
    M m = 0;
    for (size_t j = 0; j < kMxfp8BlockSize; ++j) {
      M v;
      std::memcpy(&v, row + (b * kMxfp8BlockSize + j) * sizeof(M), sizeof(M));
      v &= kMask;
      m = m > v ? m : v;
    }
    amax[b] = m;
    row_max = row_max > m ? row_max : m;
  }
  return row_max;
}

// out[c] = E4M3(x[c] * mult[c]) for one row of k elements.
template <DType kIn>
REFIT_QUANT_MULTIVERSION void QuantizeRow(const std::byte* __restrict row,
                                          size_t k,
                                          const float* __restrict mult,
                                          std::byte* __restrict out) {
  for (size_t c = 0; c < k; ++c) {
    // Finite: |x| * q <= 448 * (1 + 2^-23) (see Mxfp8ScaleExponent).
    out[c] = static_cast<std::byte>(
        internal::FiniteF32ToE4M3Sat(internal::LoadF32<kIn>(row, c) * mult[c]));
  }
}

template <DType kIn>
Status QuantizeImpl(const std::byte* in, int64_t m, int64_t k, std::byte* data,
                    std::byte* scales) {
  using M = MagBits<kIn>;
  constexpr M kNonFinite = kIn == DType::kF32    ? 0x7F800000u
                           : kIn == DType::kBF16 ? 0x7F80u
                                                 : 0x7C00u;
  const size_t blocks = static_cast<size_t>(k / kMxfp8BlockSize);
  const size_t row_bytes = static_cast<size_t>(k) * internal::kWideSize<kIn>;
  // Per block of the current row: the amax bits; per column, the block's
  // power-of-two multiplier. Allocated once per call.
  std::vector<uint32_t> amax(blocks);
  std::vector<float> mult(static_cast<size_t>(k));
  // BF16 rows go to the AVX-512 kernel where the CPU has one (same bytes).
  auto* quantize_row = &QuantizeRow<kIn>;
  if constexpr (kIn == DType::kBF16) {
    if (internal::UseBf16Avx512()) {
      quantize_row = &internal::QuantizeMxfp8RowBf16Avx512;
    }
  }
  for (int64_t r = 0; r < m; ++r) {
    const std::byte* row = in + static_cast<size_t>(r) * row_bytes;
    if (RowBlockAmax<kIn>(row, blocks, amax.data()) >= kNonFinite) {
      for (int64_t c = 0; c < k; ++c) {
        if ((internal::LoadF32Bits<kIn>(row, static_cast<size_t>(c)) &
             0x7FFFFFFFu) >= 0x7F800000u) {
          return InvalidArgument("QuantizeMxfp8: non-finite input element at " +
                                 Shape(r, c));
        }
      }
    }
    std::byte* row_scales = scales + static_cast<size_t>(r) * blocks;
    for (size_t b = 0; b < blocks; ++b) {
      uint32_t amax_bits = amax[b];
      if constexpr (kIn == DType::kBF16) amax_bits <<= 16;
      if constexpr (kIn == DType::kF16) {
        amax_bits =
            internal::F16ToF32BitsBranchless(static_cast<uint16_t>(amax_bits));
      }
      const uint8_t e = Mxfp8ScaleExponent(F32FromBits(amax_bits));
      row_scales[b] = static_cast<std::byte>(e);
      // 2^(127 - e) has biased exponent 254 - e; e <= 247 for finite input.
      const float q =
          e == 0 ? 0.0f : F32FromBits(static_cast<uint32_t>(254 - e) << 23);
      std::fill_n(mult.begin() + static_cast<ptrdiff_t>(b * kMxfp8BlockSize),
                  kMxfp8BlockSize, q);
    }
    quantize_row(row, static_cast<size_t>(k), mult.data(),
                 data + static_cast<size_t>(r * k));
  }
  return OkStatus();
}

// out[c] = E4M3ToF32(data[c]) * scale[c], stored as kOut, for one row.
template <DType kOut>
REFIT_QUANT_MULTIVERSION void DequantizeRow(const std::byte* __restrict data,
                                            size_t k,
                                            const float* __restrict scale,
                                            std::byte* __restrict out) {
  for (size_t c = 0; c < k; ++c) {
    internal::StoreF32<kOut>(
        out, c,
        internal::DequantProduct(
            internal::E4M3ToF32Branchless(static_cast<uint8_t>(data[c])),
            scale[c]));
  }
}

template <DType kOut>
void DequantizeImpl(const std::byte* data, const std::byte* scales, int64_t m,
                    int64_t k, std::byte* out) {
  const size_t blocks = static_cast<size_t>(k / kMxfp8BlockSize);
  const size_t row_bytes = static_cast<size_t>(k) * internal::kWideSize<kOut>;
  std::vector<float> scale(static_cast<size_t>(k));
  for (int64_t r = 0; r < m; ++r) {
    for (size_t b = 0; b < blocks; ++b) {
      const float s = E8M0ToF32(
          static_cast<uint8_t>(scales[static_cast<size_t>(r) * blocks + b]));
      std::fill_n(scale.begin() + static_cast<ptrdiff_t>(b * kMxfp8BlockSize),
                  kMxfp8BlockSize, s);
    }
    DequantizeRow<kOut>(data + static_cast<size_t>(r * k),
                        static_cast<size_t>(k), scale.data(),
                        out + static_cast<size_t>(r) * row_bytes);
  }
}

}  // namespace

Status QuantizeMxfp8(std::span<const std::byte> in, DType in_dtype, int64_t m,
                     int64_t k, std::span<std::byte> data,
                     std::span<std::byte> scales) {
  constexpr const char* kFn = "QuantizeMxfp8";
  REFIT_RETURN_IF_ERROR(CheckShape(kFn, m, k));
  if (!internal::IsWideFloat(in_dtype)) {
    return InvalidArgument(std::string(kFn) + ": input dtype " +
                           std::string(DTypeName(in_dtype)) +
                           " is not F32, BF16 or F16");
  }
  REFIT_RETURN_IF_ERROR(
      CheckSize(kFn, "input", in.size(),
                m * k * static_cast<int64_t>(DTypeSize(in_dtype))));
  REFIT_RETURN_IF_ERROR(CheckSize(kFn, "data", data.size(), m * k));
  REFIT_RETURN_IF_ERROR(
      CheckSize(kFn, "scales", scales.size(), m * (k / kMxfp8BlockSize)));
  if (m == 0 || k == 0) return OkStatus();
  return internal::DispatchWideFloat(in_dtype, [&](auto tag) {
    return QuantizeImpl<decltype(tag)::value>(in.data(), m, k, data.data(),
                                              scales.data());
  });
}

Status DequantizeMxfp8(std::span<const std::byte> data,
                       std::span<const std::byte> scales, int64_t m, int64_t k,
                       std::span<std::byte> out, DType out_dtype) {
  constexpr const char* kFn = "DequantizeMxfp8";
  REFIT_RETURN_IF_ERROR(CheckShape(kFn, m, k));
  if (!internal::IsWideFloat(out_dtype)) {
    return InvalidArgument(std::string(kFn) + ": output dtype " +
                           std::string(DTypeName(out_dtype)) +
                           " is not F32, BF16 or F16");
  }
  REFIT_RETURN_IF_ERROR(CheckSize(kFn, "data", data.size(), m * k));
  REFIT_RETURN_IF_ERROR(
      CheckSize(kFn, "scales", scales.size(), m * (k / kMxfp8BlockSize)));
  REFIT_RETURN_IF_ERROR(
      CheckSize(kFn, "output", out.size(),
                m * k * static_cast<int64_t>(DTypeSize(out_dtype))));
  if (m == 0 || k == 0) return OkStatus();
  internal::DispatchWideFloat(out_dtype, [&](auto tag) {
    DequantizeImpl<decltype(tag)::value>(data.data(), scales.data(), m, k,
                                         out.data());
    return 0;
  });
  return OkStatus();
}

}  // namespace refit::quant
