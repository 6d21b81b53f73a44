#include "refit/core/format/scale_layout.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "refit/core/quant/block_grid.h"
#include "refit/core/quant/mxfp8.h"
#include "refit/core/quant/scale_swizzle.h"

namespace refit {

namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

ScaleLayout Fp8Layout(const ParamSpec& p, const ParamFormat& f,
                      const ShardGeometry& shard) {
  ScaleLayout s;
  s.dtype = DType::kF32;
  const ShardGeometry g = SplitAtBlockParts(p, shard);
  const std::vector<int64_t> bounds = BlockPartBounds(p, g.dim);
  const int64_t along = g.dim == 0 ? f.block.rows : f.block.cols;
  int64_t blocks = 0;
  for (const Segment& seg : g.segments) {
    const int64_t base =
        *(std::upper_bound(bounds.begin(), bounds.end(), seg.global_start) - 1);
    s.segment_start.push_back(blocks);
    blocks += CeilDiv(seg.global_start + seg.length - base, along) -
              (seg.global_start - base) / along;
  }
  if (g.dim == 0) {
    s.rows = blocks;
    s.cols = CeilDiv(p.shape[1], f.block.cols);
  } else {
    s.rows = CeilDiv(p.shape[0], f.block.rows);
    s.cols = blocks;
  }
  s.bytes = static_cast<uint64_t>(s.rows * s.cols) * 4;
  return s;
}

ScaleLayout MxLayout(const ParamFormat& f, const ShardGeometry& g) {
  ScaleLayout s;
  s.dtype = DType::kU8;
  s.rows = g.local_shape[0];
  s.cols = g.local_shape[1] / quant::kMxfp8BlockSize;
  s.bytes = f.swizzled ? quant::Swizzled128x4Bytes(s.rows, s.cols)
                       : static_cast<uint64_t>(s.rows * s.cols);
  return s;
}

Status Named(const ParamSpec& p, const Status& s) {
  if (s.ok()) return s;
  return InvalidArgument("tensor " + p.name + ": " + s.message());
}

// Carries out `c` from `from` into `to` with the CPU.
void CopyBox(const BoxCopy& c, const std::byte* from, std::byte* to) {
  for (uint64_t r = 0; r < c.rows; ++r) {
    std::memcpy(to + c.to + r * c.to_pitch, from + c.from + r * c.from_pitch,
                c.width);
  }
}

// A box of `n` x `w` elements of `es` bytes at (r0, c0) of a row-major
// matrix of `from_cols` columns, copied to (tr, tc) of one of `to_cols`.
BoxCopy Box(int64_t from_cols, int64_t r0, int64_t c0, int64_t to_cols,
            int64_t tr, int64_t tc, int64_t n, int64_t w, size_t es) {
  return {static_cast<uint64_t>((r0 * from_cols + c0) * es),
          static_cast<uint64_t>(from_cols * es),
          static_cast<uint64_t>((tr * to_cols + tc) * es),
          static_cast<uint64_t>(to_cols * es),
          static_cast<uint64_t>(w * es),
          static_cast<uint64_t>(n)};
}

// The steps of every (widened) segment of `recv`, kept as the segments of
// `dst`; both split at block parts, one to one.
std::vector<SegmentQuantize> Fp8Steps(const ParamSpec& p, const ParamFormat& f,
                                      const ShardGeometry& recv,
                                      const ShardGeometry& dst) {
  const ScaleLayout sl = Fp8Layout(p, f, dst);
  const size_t es = DTypeSize(f.src_dtype);
  const int64_t rows = recv.local_shape[0], cols = recv.local_shape[1];
  const bool by_row = dst.dim == 0;
  std::vector<SegmentQuantize> steps;
  for (size_t i = 0; i < dst.segments.size(); ++i) {
    const Segment& w = recv.segments[i];
    const Segment& d = dst.segments[i];
    SegmentQuantize s;
    s.n = by_row ? w.length : rows;
    s.k = by_row ? cols : w.length;
    s.gather = Box(cols, by_row ? w.local_start : 0, by_row ? 0 : w.local_start,
                   s.k, 0, 0, s.n, s.k, es);
    const int64_t skip = d.global_start - w.global_start;
    s.data = Box(s.k, by_row ? skip : 0, by_row ? 0 : skip, dst.local_shape[1],
                 by_row ? d.local_start : 0, by_row ? 0 : d.local_start,
                 by_row ? d.length : rows, by_row ? cols : d.length, 1);
    const quant::GridShape grid = quant::BlockGrid(s.n, s.k, f.block);
    s.scales = Box(grid.cols, 0, 0, sl.cols, by_row ? sl.segment_start[i] : 0,
                   by_row ? 0 : sl.segment_start[i], grid.rows, grid.cols, 4);
    steps.push_back(s);
  }
  return steps;
}

// Block FP8 of a shard on the CPU, step by step.
Status QuantizeFp8Shard(const ParamSpec& p, const ParamFormat& f,
                        std::span<const SegmentQuantize> steps,
                        std::span<const std::byte> in,
                        std::span<std::byte> data,
                        std::span<std::byte> scales) {
  const size_t es = DTypeSize(f.src_dtype);
  std::vector<std::byte> box, q, s;
  for (const SegmentQuantize& step : steps) {
    box.resize(step.n * step.k * es);
    CopyBox(step.gather, in.data(), box.data());
    q.resize(step.n * step.k);
    s.resize(quant::BlockGrid(step.n, step.k, f.block).count() * 4);
    REFIT_RETURN_IF_ERROR(Named(p, QuantizeBox(f, box, step.n, step.k, q, s)));
    CopyBox(step.data, q.data(), data.data());
    CopyBox(step.scales, s.data(), scales.data());
  }
  return OkStatus();
}

Status QuantizeMxShard(const ParamSpec& p, const ParamFormat& f,
                       std::span<const std::byte> in, const ShardGeometry& dst,
                       std::span<std::byte> data, std::span<std::byte> scales) {
  const int64_t m = dst.local_shape[0], k = dst.local_shape[1];
  if (!f.swizzled)
    return Named(p, quant::QuantizeMxfp8(in, f.src_dtype, m, k, data, scales));
  std::vector<std::byte> plain(m * k / quant::kMxfp8BlockSize);
  REFIT_RETURN_IF_ERROR(
      Named(p, quant::QuantizeMxfp8(in, f.src_dtype, m, k, data, plain)));
  return Named(
      p, quant::Swizzle128x4(plain, m, k / quant::kMxfp8BlockSize, scales));
}

}  // namespace

ScaleLayout ScaleLayoutOf(const ParamSpec& p, const ParamFormat& f,
                          const ShardGeometry& g) {
  switch (f.kind) {
    case FormatKind::kFp8Block:
      return Fp8Layout(p, f, g);
    case FormatKind::kMxfp8:
      return MxLayout(f, g);
    case FormatKind::kPlain:
      break;
  }
  return {};
}

Status QuantizeShard(const ParamSpec& p, const ParamFormat& f,
                     const ShardGeometry& recv,
                     std::span<const std::byte> assembled,
                     const ShardGeometry& dst, std::span<std::byte> data,
                     std::span<std::byte> scales) {
  const uint64_t want_in = recv.LocalElements() * DTypeSize(f.src_dtype);
  const ScaleLayout sl = ScaleLayoutOf(p, f, dst);
  if (assembled.size() != want_in ||
      data.size() != static_cast<uint64_t>(dst.LocalElements()) ||
      scales.size() != sl.bytes) {
    return InvalidArgument("tensor " + p.name +
                           ": quantise shard: buffer sizes do not match "
                           "the shard geometry");
  }
  if (f.kind == FormatKind::kMxfp8) {
    return QuantizeMxShard(p, f, assembled, dst, data, scales);
  }
  REFIT_ASSIGN_OR_RETURN(const std::vector<SegmentQuantize> steps,
                         Fp8ShardSteps(p, f, recv, dst));
  return QuantizeFp8Shard(p, f, steps, assembled, data, scales);
}

Result<std::vector<SegmentQuantize>> Fp8ShardSteps(const ParamSpec& p,
                                                   const ParamFormat& f,
                                                   const ShardGeometry& recv,
                                                   const ShardGeometry& dst) {
  const ShardGeometry recv_split = SplitAtBlockParts(p, recv);
  const ShardGeometry dst_split = SplitAtBlockParts(p, dst);
  if (recv_split.segments.size() != dst_split.segments.size()) {
    return InvalidArgument("tensor " + p.name +
                           ": quantise shard: receive and destination "
                           "segments differ");
  }
  return Fp8Steps(p, f, recv_split, dst_split);
}

Status QuantizeBox(const ParamFormat& f, std::span<const std::byte> in,
                   int64_t n, int64_t k, std::span<std::byte> data,
                   std::span<std::byte> scales) {
  if (f.kind == FormatKind::kMxfp8) {
    return quant::QuantizeMxfp8(in, f.src_dtype, n, k, data, scales);
  }
  quant::BlockFp8Options o;
  o.block = f.block;
  o.scale_format = f.scale_format;
  return quant::QuantizeBlockFp8(in, f.src_dtype, n, k, o, data, scales);
}

uint64_t BoxScaleBytes(const ParamFormat& f, int64_t n, int64_t k) {
  if (f.kind == FormatKind::kMxfp8) {
    return static_cast<uint64_t>(n * (k / quant::kMxfp8BlockSize));
  }
  return static_cast<uint64_t>(quant::BlockGrid(n, k, f.block).count()) * 4;
}

}  // namespace refit
