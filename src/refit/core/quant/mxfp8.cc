#include "refit/core/quant/mxfp8.h"

#include <algorithm>
#include <string>

#include "refit/core/quant/arg_checks.h"
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

template <DType kIn>
Status QuantizeImpl(const std::byte* in, int64_t m, int64_t k, std::byte* data,
                    std::byte* scales) {
  const int64_t blocks = k / kMxfp8BlockSize;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      const size_t base = static_cast<size_t>(r * k + b * kMxfp8BlockSize);
      uint32_t amax_bits = 0;
      for (size_t j = 0; j < kMxfp8BlockSize; ++j) {
        amax_bits = std::max(
            amax_bits, internal::LoadF32Bits<kIn>(in, base + j) & 0x7FFFFFFFu);
      }
      if (amax_bits >= 0x7F800000u) {
        for (int64_t j = 0; j < kMxfp8BlockSize; ++j) {
          if ((internal::LoadF32Bits<kIn>(in, base + static_cast<size_t>(j)) &
               0x7FFFFFFFu) >= 0x7F800000u) {
            return InvalidArgument(
                "QuantizeMxfp8: non-finite input element at " +
                Shape(r, b * kMxfp8BlockSize + j));
          }
        }
      }
      const uint8_t e = Mxfp8ScaleExponent(F32FromBits(amax_bits));
      scales[static_cast<size_t>(r * blocks + b)] = static_cast<std::byte>(e);
      // 2^(127 - e) has biased exponent 254 - e; e <= 247 for finite input.
      const float q =
          e == 0 ? 0.0f : F32FromBits(static_cast<uint32_t>(254 - e) << 23);
      for (size_t j = 0; j < kMxfp8BlockSize; ++j) {
        // Finite: |x| * q <= 448 * (1 + 2^-23) (see Mxfp8ScaleExponent).
        data[base + j] = static_cast<std::byte>(internal::FiniteF32ToE4M3Sat(
            internal::LoadF32<kIn>(in, base + j) * q));
      }
    }
  }
  return OkStatus();
}

template <DType kOut>
void DequantizeImpl(const std::byte* data, const std::byte* scales, int64_t m,
                    int64_t k, std::byte* out) {
  const int64_t blocks = k / kMxfp8BlockSize;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      const float s = E8M0ToF32(
          static_cast<uint8_t>(scales[static_cast<size_t>(r * blocks + b)]));
      const size_t base = static_cast<size_t>(r * k + b * kMxfp8BlockSize);
      for (size_t j = 0; j < kMxfp8BlockSize; ++j) {
        internal::StoreF32<kOut>(
            out, base + j, E4M3ToF32(static_cast<uint8_t>(data[base + j])) * s);
      }
    }
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
