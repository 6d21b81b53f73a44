#include "refit/core/quant/float_cast.h"

#include <bit>
#include <cstring>
#include <string>

#include "refit/core/quant/element_access.h"

namespace refit::quant {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; refit assumes a "
              "little-endian host");

// One tight loop per (Src, Dst) pair: unaligned loads and stores through
// memcpy (compiled to plain vector moves), branch-free conversions, no
// allocation; the loops vectorise.
template <typename Src, typename Dst, typename Convert>
inline void CastLoop(const std::byte* __restrict in, std::byte* __restrict out,
                     size_t n, Convert convert) {
  for (size_t i = 0; i < n; ++i) {
    Src s;
    std::memcpy(&s, in + i * sizeof(Src), sizeof(Src));
    const Dst d = convert(s);
    std::memcpy(out + i * sizeof(Dst), &d, sizeof(Dst));
  }
}

REFIT_QUANT_MULTIVERSION
void CastF32ToBf16(const std::byte* in, std::byte* out, size_t n) {
  CastLoop<uint32_t, uint16_t>(in, out, n, [](uint32_t u) {
    return internal::F32ToBf16Branchless(F32FromBits(u));
  });
}

REFIT_QUANT_MULTIVERSION
void CastF32ToF16(const std::byte* in, std::byte* out, size_t n) {
  CastLoop<uint32_t, uint16_t>(in, out, n, [](uint32_t u) {
    return internal::F32ToF16Branchless(F32FromBits(u));
  });
}

REFIT_QUANT_MULTIVERSION
void CastBf16ToF32(const std::byte* in, std::byte* out, size_t n) {
  CastLoop<uint16_t, uint32_t>(
      in, out, n, [](uint16_t h) { return static_cast<uint32_t>(h) << 16; });
}

REFIT_QUANT_MULTIVERSION
void CastBf16ToF16(const std::byte* in, std::byte* out, size_t n) {
  CastLoop<uint16_t, uint16_t>(in, out, n, [](uint16_t h) {
    return internal::F32ToF16Branchless(Bf16ToF32(h));
  });
}

REFIT_QUANT_MULTIVERSION
void CastF16ToF32(const std::byte* in, std::byte* out, size_t n) {
  CastLoop<uint16_t, uint32_t>(in, out, n, internal::F16ToF32BitsBranchless);
}

REFIT_QUANT_MULTIVERSION
void CastF16ToBf16(const std::byte* in, std::byte* out, size_t n) {
  CastLoop<uint16_t, uint16_t>(in, out, n, [](uint16_t h) {
    return internal::F32ToBf16Branchless(
        F32FromBits(internal::F16ToF32BitsBranchless(h)));
  });
}

bool IsCastable(DType d) {
  return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16;
}

std::string PairName(DType in, DType out) {
  return std::string(DTypeName(in)) + " -> " + std::string(DTypeName(out));
}

}  // namespace

Status CastBuffer(std::span<const std::byte> in, DType in_dtype,
                  std::span<std::byte> out, DType out_dtype) {
  if (!IsCastable(in_dtype) || !IsCastable(out_dtype)) {
    return InvalidArgument("CastBuffer: unsupported dtype pair " +
                           PairName(in_dtype, out_dtype) +
                           " (supported: F32, BF16, F16)");
  }
  const size_t in_size = DTypeSize(in_dtype);
  const size_t out_size = DTypeSize(out_dtype);
  if (in.size() % in_size != 0) {
    return InvalidArgument("CastBuffer " + PairName(in_dtype, out_dtype) +
                           ": input of " + std::to_string(in.size()) +
                           " bytes is not a whole number of " +
                           std::to_string(in_size) + "-byte elements");
  }
  const size_t n = in.size() / in_size;
  if (out.size() != n * out_size) {
    return InvalidArgument("CastBuffer " + PairName(in_dtype, out_dtype) +
                           ": " + std::to_string(n) + " elements need " +
                           std::to_string(n * out_size) +
                           " output bytes, got " + std::to_string(out.size()));
  }
  if (n == 0) return OkStatus();
  const std::byte* src = in.data();
  std::byte* dst = out.data();
  if (in_dtype == out_dtype) {
    std::memcpy(dst, src, in.size());
    return OkStatus();
  }
  switch (in_dtype) {
    case DType::kF32:
      if (out_dtype == DType::kBF16) {
        CastF32ToBf16(src, dst, n);
      } else {
        CastF32ToF16(src, dst, n);
      }
      break;
    case DType::kBF16:
      if (out_dtype == DType::kF32) {
        CastBf16ToF32(src, dst, n);
      } else {
        CastBf16ToF16(src, dst, n);
      }
      break;
    case DType::kF16:
      if (out_dtype == DType::kF32) {
        CastF16ToF32(src, dst, n);
      } else {
        CastF16ToBf16(src, dst, n);
      }
      break;
    default:
      return Internal("CastBuffer: unreachable dtype " +
                      PairName(in_dtype, out_dtype));
  }
  return OkStatus();
}

}  // namespace refit::quant
