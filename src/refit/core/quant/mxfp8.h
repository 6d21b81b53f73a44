// MXFP8 (OCP Microscaling Formats MX v1.0, layouts.md §4.2;
// megatron_resharding.md §3.2): a row-major [M, K] tensor is stored as FP8
// E4M3FN elements [M, K] plus one E8M0 scale byte per 32 consecutive elements
// along K (row-wise scales [M, K / 32]). E8M0 is an exponent with bias 127 and
// no sign or mantissa: byte e means 2^(e - 127); 0xFF is NaN. The value of an
// element is e4m3 * 2^(e - 127).
//
// Scales follow NVIDIA's recipe (Megatron
// megatron/core/inference/quantization/mxfp8_quantize.py, after Mishra et al.,
// arXiv 2506.08027): 2^ceil(log2(amax / 448)), rounded up so that no element
// exceeds 448. The OCP reference derives the exponent from floor(log2(amax))
// instead; expect one-step scale differences against such producers.
// The swizzled scale layout is in scale_swizzle.h. Pure: no I/O, no threads.
#ifndef REFIT_CORE_QUANT_MXFP8_H_
#define REFIT_CORE_QUANT_MXFP8_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "refit/core/dtype.h"
#include "refit/core/quant/float_cast.h"
#include "refit/core/status.h"

namespace refit::quant {

/// Elements per MXFP8 scale (OCP MX v1.0 block size; Megatron
/// MXFP8_BLOCK_SIZE).
inline constexpr int64_t kMxfp8BlockSize = 32;

/// E8M0 scale byte -> F32: 2^(e - 127), exact; e = 0 is 2^-127 (an F32
/// subnormal, bits 0x00400000); 0xFF is NaN (OCP MX v1.0, E8M0 scale
/// format). NaN -> F32 bits 0x7FC00000.
constexpr float E8M0ToF32(uint8_t e) {
  if (e == 0xFF) return F32FromBits(0x7FC00000u);
  if (e == 0) return F32FromBits(0x00400000u);
  return F32FromBits(static_cast<uint32_t>(e) << 23);
}

/// The E8M0 scale byte NVIDIA's recipe gives a block whose largest magnitude
/// is `amax` (finite, >= 0): the biased exponent of amax / 448 (an F32
/// division) rounded up to a power of two, computed on the F32 bits as
/// ((bits + 0x007FFFFF) & 0x7F800000) >> 23 (Megatron mxfp8_quantize.py).
/// Examples: amax 448 -> 127 (scale 1), 449 -> 128, 224 -> 126. An all-zero
/// block (and any amax whose amax / 448 underflows to 0) gives 0.
constexpr uint8_t Mxfp8ScaleExponent(float amax) {
  return static_cast<uint8_t>(
      ((F32Bits(amax / kE4M3Max) + 0x007FFFFFu) & 0x7F800000u) >> 23);
}

/// Quantises a row-major [m, k] tensor `in` of `in_dtype` (F32, BF16 or F16;
/// packed little-endian, any alignment) to MXFP8:
///   data:   F8_E4M3 [m, k], m * k bytes, row-major;
///   scales: uint8 E8M0 [m, k / 32], row-major (unswizzled; see
///           Swizzle128x4 for the cuBLAS / FlashInfer layout).
/// Per 32-element block: e = Mxfp8ScaleExponent(amax); elements =
/// F32ToE4M3(x * 2^(127 - e), kSaturate), which equals RNE(x / 2^(e - 127))
/// because the factor is an exact power of two (e <= 247 for finite input).
/// A block with e == 0 gets elements x * 0 (±0), as Megatron's kernel does
/// (it multiplies by a quant scale of 0).
/// Errors (kInvalidArgument): m or k < 0; k % 32 != 0 (the message names k);
/// in_dtype not F32/BF16/F16; a span of the wrong size; a NaN or infinite
/// input element (the message names its [row, col]). Outputs are unspecified
/// after an error.
Status QuantizeMxfp8(std::span<const std::byte> in, DType in_dtype, int64_t m,
                     int64_t k, std::span<std::byte> data,
                     std::span<std::byte> scales);

/// Dequantises MXFP8 with unswizzled scales [m, k / 32]:
/// out[r, c] = E4M3ToF32(data[r, c]) * E8M0ToF32(scales[r, c / 32]) (an F32
/// multiplication, exact unless the product leaves the F32 range; a 0xFF scale
/// gives NaN; every NaN is stored canonical: F32 0x7FC00000, BF16 0x7FC0,
/// F16 0x7E00), stored as `out_dtype` (F32; BF16 / F16 rounded RNE).
/// Errors (kInvalidArgument): m or k < 0; k % 32 != 0; out_dtype not
/// F32/BF16/F16; a span of the wrong size.
Status DequantizeMxfp8(std::span<const std::byte> data,
                       std::span<const std::byte> scales, int64_t m, int64_t k,
                       std::span<std::byte> out, DType out_dtype);

}  // namespace refit::quant

#endif  // REFIT_CORE_QUANT_MXFP8_H_
