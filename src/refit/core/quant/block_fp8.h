// DeepSeek-V3 / Kimi-K2 block FP8 (layouts.md §4.1): a row-major [N, K]
// weight is stored as float8_e4m3fn [N, K] plus an F32 `weight_scale_inv`
// [ceil(N/B), ceil(K/B)] (row-major, one value per B x B block, B = 128 by
// default, from `quantization_config.weight_block_size`). Despite its name,
// scale_inv is the multiplier that recovers the value:
//   W[n, k] = e4m3[n, k] * scale_inv[n / B, k / B]
// (DeepSeek-V3 inference/kernel.py `weight_dequant`).
//
// Quantisation follows DeepSeek-V3 inference/kernel.py `weight_quant` /
// `act_quant`: per block, s = amax / 448 (amax over the block's real elements;
// partial edge blocks behave as if zero-padded, README_WEIGHTS.md), elements
// = RNE(x / s) saturated to ±448. Pure: no I/O, no threads.
#ifndef REFIT_CORE_QUANT_BLOCK_FP8_H_
#define REFIT_CORE_QUANT_BLOCK_FP8_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "refit/core/dtype.h"
#include "refit/core/quant/block_grid.h"
#include "refit/core/status.h"

namespace refit::quant {

/// How the per-block scale is rounded.
enum class BlockScaleFormat : uint8_t {
  /// s = amax / 448 in F32 (DeepSeek-V3 / Kimi-K2 checkpoints).
  kF32,
  /// s = 2^ceil(log2(amax / 448)), a power of two rounded up, stored as F32
  /// (DeepSeek-V3.1 `scale_fmt: "ue8m0"`, kernel.py `act_quant`). Computed
  /// exactly on the F32 bits of amax / 448: (bits + 0x007FFFFF) & 0x7F800000,
  /// NVIDIA's rounding (Megatron mxfp8_quantize.py). DeepSeek's Triton code
  /// takes ceil(log2(s)) in floating point, which can differ for an s within
  /// one ulp above a power of two.
  kUe8m0,
};

struct BlockFp8Options {
  /// Block extents; both > 0. Default 128 x 128.
  BlockShape block;
  BlockScaleFormat scale_format = BlockScaleFormat::kF32;
  /// amax is clamped to at least this before the scale is taken. 0 (default)
  /// means no clamp; DeepSeek-V3 `act_quant` (V3.1+) uses 1e-4. Must be
  /// finite and >= 0.
  float min_amax = 0.0f;
};

/// The scale_inv of one block whose largest magnitude is `amax` (finite,
/// >= 0): with a = max(amax, options.min_amax), a / 448 rounded per
/// options.scale_format. Decision for an all-zero block (a == 0), and for an
/// a / 448 that underflows to 0: scale_inv = 1.0, so the elements are RNE(x)
/// (all ±0 for a zero block) and dequantise to 0. This is Transformer
/// Engine's rule for amax == 0 (common/recipe/recipe_common.cuh
/// `compute_scale_from_amax`, used by Megatron's
/// `fp8_recipe=blockwise`); DeepSeek's `weight_quant` would
/// divide by 0 and store NaN elements.
float BlockFp8ScaleInv(float amax, const BlockFp8Options& options);

/// Quantises a row-major [n, k] tensor `in` of `in_dtype` (F32, BF16 or F16;
/// packed little-endian, any alignment) into
///   data:      F8_E4M3 [n, k], n * k bytes, row-major;
///   scale_inv: F32 [ceil(n / B_r), ceil(k / B_c)], row-major, 4 bytes each
///              (little-endian, any alignment).
/// Per block: amax = max |x| over the block's elements inside [n, k];
/// s = BlockFp8ScaleInv(amax, options); element = F32ToE4M3(x / s,
/// kSaturate) with x / s an IEEE F32 division (RNE). GPU kernels that use an
/// approximate division may differ in rare elements.
/// Errors (kInvalidArgument): n or k < 0; a block extent <= 0; min_amax < 0
/// or not finite; in_dtype not F32/BF16/F16; a span of the wrong size (the
/// message names it and the expected size); a NaN or infinite input element
/// (the message names its [row, col]) — a weight that is not finite has no
/// meaningful scale. Outputs are unspecified after an error.
Status QuantizeBlockFp8(std::span<const std::byte> in, DType in_dtype,
                        int64_t n, int64_t k, const BlockFp8Options& options,
                        std::span<std::byte> data,
                        std::span<std::byte> scale_inv);

/// Dequantises block FP8: out[r, c] = E4M3ToF32(data[r, c]) *
/// scale_inv[r / B_r, c / B_c] (an F32 multiplication, DeepSeek-V3
/// `weight_dequant`), stored as `out_dtype` (F32 exact; BF16 / F16 rounded
/// RNE from that F32 product, as the Triton kernel's store does; every NaN
/// canonical: F32 0x7FC00000, BF16 0x7FC0, F16 0x7E00). Shapes as in
/// QuantizeBlockFp8; `out` is n * k elements of out_dtype.
/// Errors (kInvalidArgument): bad n, k or block; out_dtype not
/// F32/BF16/F16; a span of the wrong size.
Status DequantizeBlockFp8(std::span<const std::byte> data,
                          std::span<const std::byte> scale_inv, int64_t n,
                          int64_t k, BlockShape block, std::span<std::byte> out,
                          DType out_dtype);

}  // namespace refit::quant

#endif  // REFIT_CORE_QUANT_BLOCK_FP8_H_
