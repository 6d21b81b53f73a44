// Where the scales of a quantised destination shard live, and quantising a
// whole shard from its assembled source elements. Block FP8 scales of a shard
// are the scales of the *global* blocks its segments touch (a TP cut through a
// block repeats that block's scale on both ranks, as slicing a DeepSeek-V3
// checkpoint's weight_scale_inv does); MXFP8 scales are [rows, cols / 32] of
// the local tensor, optionally in the 128x4 swizzled layout (layouts.md §4.2).
// Pure: no I/O, no threads.
#ifndef REFIT_CORE_FORMAT_SCALE_LAYOUT_H_
#define REFIT_CORE_FORMAT_SCALE_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "refit/core/format/dst_format.h"
#include "refit/core/shard.h"

namespace refit {

/// The scale tensor of one quantised destination shard.
struct ScaleLayout {
  int64_t rows = 0;           ///< rows of the (unswizzled) scale matrix
  int64_t cols = 0;           ///< columns of the (unswizzled) scale matrix
  DType dtype = DType::kF32;  ///< F32 (block FP8) or U8 holding E8M0 (MXFP8)
  uint64_t bytes = 0;  ///< storage bytes (swizzled: padded to 128 x 4 tiles)
  /// Block FP8: per segment, the scale row (dim 0) or column (dim 1) where
  /// its blocks start. Empty for MXFP8.
  std::vector<int64_t> segment_start;
};

/// The scale layout of destination shard `g` (not widened) of quantised
/// parameter `p` with format `f`. kPlain formats give an empty layout.
ScaleLayout ScaleLayoutOf(const ParamSpec& p, const ParamFormat& f,
                          const ShardGeometry& g);

/// Quantises a destination shard at once. `assembled` holds the shard's
/// source elements (f.src_dtype) laid out as `recv` (the destination shard
/// `dst`, or its ExpandToBlocks widening when f.recv_block > 1); writes
/// F8_E4M3 `data` (dst's local shape) and `scales` (ScaleLayoutOf(p, f,
/// dst)). Block FP8 quantises every widened segment as its own tensor, whose
/// blocks are then the global blocks.
/// Errors: kInvalidArgument for a span of the wrong size or a non-finite
/// element (the message names the tensor and the quantiser's reason).
Status QuantizeShard(const ParamSpec& p, const ParamFormat& f,
                     const ShardGeometry& recv,
                     std::span<const std::byte> assembled,
                     const ShardGeometry& dst, std::span<std::byte> data,
                     std::span<std::byte> scales);

/// A 2-D copy between two buffers: `rows` rows of `width` bytes, read from
/// byte `from` with rows `from_pitch` bytes apart and written at byte `to`
/// with rows `to_pitch` bytes apart.
struct BoxCopy {
  uint64_t from = 0, from_pitch = 0, to = 0, to_pitch = 0, width = 0, rows = 0;
};

/// One segment of a block-FP8 QuantizeShard: the segment's box of the
/// assembled shard gathered into a contiguous n x k buffer of source
/// elements (`gather`), quantised as one tensor (QuantizeBox: n * k data
/// bytes, BlockGrid(n, k) F32 scales), then the part of its data inside the
/// destination segment copied into the shard's data (`data`, from the n x k
/// FP8 buffer) and its scales into the shard's scales (`scales`, from the
/// box's scales). Every copy in bytes.
struct SegmentQuantize {
  BoxCopy gather;
  int64_t n = 0, k = 0;
  BoxCopy data, scales;
};

/// The segments QuantizeShard quantises for a block-FP8 shard (f.kind ==
/// kFp8Block), in order: the plan any memory (host or device) carries out.
/// Errors: kInvalidArgument (naming the tensor) when `recv` and `dst` split
/// into different segments.
Result<std::vector<SegmentQuantize>> Fp8ShardSteps(const ParamSpec& p,
                                                   const ParamFormat& f,
                                                   const ShardGeometry& recv,
                                                   const ShardGeometry& dst);

/// The scales and data of one piece of a shard quantised by its sender:
/// `n` x `k` source elements (contiguous, row-major) quantised as one tensor.
/// Valid only for pieces holding whole blocks (ResolveFormats decides).
/// data: n * k bytes; scales: BlockGrid(n, k, f.block) F32 values (block
/// FP8) or n * k / 32 E8M0 bytes (MXFP8, unswizzled).
/// Errors: as QuantizeBlockFp8 / QuantizeMxfp8.
Status QuantizeBox(const ParamFormat& f, std::span<const std::byte> in,
                   int64_t n, int64_t k, std::span<std::byte> data,
                   std::span<std::byte> scales);

/// Bytes of QuantizeBox's scales for an n x k box.
uint64_t BoxScaleBytes(const ParamFormat& f, int64_t n, int64_t k);

}  // namespace refit

#endif  // REFIT_CORE_FORMAT_SCALE_LAYOUT_H_
