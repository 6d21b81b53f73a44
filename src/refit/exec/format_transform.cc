#include "refit/exec/format_transform.h"

#include <cstring>
#include <string>

#include "refit/core/quant/block_grid.h"
#include "refit/core/quant/float_cast.h"
#include "refit/core/quant/mxfp8.h"

namespace refit::exec {

namespace {

// Casts the runs of a block list (of `from` elements) into one contiguous
// buffer of `to` elements, or back.
Status CastRuns(const std::byte* src, uint64_t run, uint64_t nruns,
                uint64_t stride, DType from, std::byte* dst, uint64_t dst_run,
                uint64_t dst_stride, DType to) {
  for (uint64_t i = 0; i < nruns; ++i) {
    REFIT_RETURN_IF_ERROR(quant::CastBuffer(
        {src + i * stride, run}, from, {dst + i * dst_stride, dst_run}, to));
  }
  return OkStatus();
}

// `piece`'s byte fields rescaled from elements of `from` bytes to `to`.
Piece Rescaled(const Piece& p, uint64_t from, uint64_t to) {
  Piece r = p;
  r.src_offset = p.src_offset / from * to;
  r.dst_offset = p.dst_offset / from * to;
  r.run_bytes = p.run_bytes / from * to;
  r.src_stride = p.src_stride / from * to;
  r.dst_stride = p.dst_stride / from * to;
  return r;
}

// A block of `nruns` runs, as one run when they touch.
MutBlock Runs(std::byte* base, uint64_t run, uint64_t nruns, uint64_t stride) {
  if (run == stride || nruns == 1) return {base, run * nruns, 1, run * nruns};
  return {base, run, nruns, stride};
}

// The segment of `g` holding local index `at` along g.dim.
size_t SegmentAt(const ShardGeometry& g, int64_t at) {
  size_t i = 0;
  while (i + 1 < g.segments.size() &&
         at >= g.segments[i].local_start + g.segments[i].length) {
    ++i;
  }
  return i;
}

}  // namespace

FormatTransform::FormatTransform(const ModelSpec& spec,
                                 const FormatPlan& formats, DstTensors* dst,
                                 int rank)
    : spec_(spec),
      formats_(formats),
      dst_(dst),
      rank_(rank),
      staging_(spec.params.size()) {
  if (dst_ == nullptr) return;
  // Every receiver-side quantised shard is staged up front, so that Finish
  // also catches a shard that received nothing.
  for (uint32_t p : dst_->data().params()) {
    const ParamFormat& f = formats_.params[p];
    if (f.kind == FormatKind::kPlain || f.side != ConvertSide::kRecv) continue;
    Staging& s = staging_[p];
    s.geometry =
        ExpandToBlocks(spec_.params[p], dst_->data().geometry(p), f.recv_block);
    s.bytes.resize(s.geometry.LocalElements() * DTypeSize(f.src_dtype));
  }
}

bool FormatTransform::ShouldTransform(uint32_t dst_param) const {
  return formats_.params[dst_param].converts();
}

Result<std::vector<ConstBlock>> FormatTransform::PrepareSend(
    const TransferOp&, const Piece& piece, const std::byte* src) {
  const ParamFormat& f = formats_.params[piece.dst_param];
  const ConstBlock direct{src + piece.src_offset, piece.run_bytes, piece.nruns,
                          piece.src_stride};
  if (f.side == ConvertSide::kRecv) return std::vector<ConstBlock>{direct};
  if (f.kind != FormatKind::kPlain) return Quantize(piece, src);
  const uint64_t es = DTypeSize(f.src_dtype), ed = DTypeSize(f.dtype);
  const uint64_t run = piece.run_bytes / es * ed;
  std::span<std::byte> wire = scratch_.Allocate(run * piece.nruns);
  REFIT_RETURN_IF_ERROR(CastRuns(direct.base, piece.run_bytes, piece.nruns,
                                 piece.src_stride, f.src_dtype, wire.data(),
                                 run, run, f.dtype));
  return std::vector<ConstBlock>{{wire.data(), wire.size(), 1, wire.size()}};
}

Result<std::vector<ConstBlock>> FormatTransform::Quantize(
    const Piece& piece, const std::byte* src) {
  const ParamFormat& f = formats_.params[piece.dst_param];
  const ParamSpec& p = spec_.params[piece.dst_param];
  const uint64_t es = DTypeSize(f.src_dtype);
  const PieceBox box = BoxOf(p, piece, es);
  const uint64_t elements = piece.bytes() / es;
  std::span<const std::byte> in{src + piece.src_offset, piece.bytes()};
  if (piece.nruns > 1) {  // gather the strided box first
    std::span<std::byte> packed = scratch_.Allocate(piece.bytes());
    for (uint64_t i = 0; i < piece.nruns; ++i) {
      std::memcpy(packed.data() + i * piece.run_bytes,
                  src + piece.src_offset + i * piece.src_stride,
                  piece.run_bytes);
    }
    in = packed;
  }
  const uint64_t scale_bytes = BoxScaleBytes(f, box.rows, box.cols);
  std::span<std::byte> wire = scratch_.Allocate(elements + scale_bytes);
  Status st = QuantizeBox(f, in, box.rows, box.cols, wire.first(elements),
                          wire.subspan(elements));
  if (!st.ok())
    return InvalidArgument("tensor " + p.name + ": " + st.message());
  return std::vector<ConstBlock>{{wire.data(), wire.size(), 1, wire.size()}};
}

// Where a sender-quantised piece's data and scales go in the destination.
std::vector<MutBlock> FormatTransform::PlaceQuantized(
    const Piece& piece) const {
  const uint32_t p = piece.dst_param;
  const ParamFormat& f = formats_.params[p];
  const ShardGeometry& shard = dst_->data().geometry(p);
  const ShardGeometry g = SplitAtBlockParts(spec_.params[p], shard);
  const ScaleLayout& sl = dst_->scale_layout(p);
  const uint64_t es = DTypeSize(f.src_dtype);
  const PieceBox box = BoxOf(spec_.params[p], piece, es);
  const int64_t k_local = g.local_shape[1];
  const int64_t at = piece.dst_offset / es;  // element index in the shard
  const int64_t row0 = at / k_local, col0 = at % k_local;
  std::byte* data = dst_->data().data(p) + at;
  std::vector<MutBlock> out;
  out.push_back(Runs(data, box.cols, box.rows, k_local));
  int64_t srow = row0, scol = col0 / quant::kMxfp8BlockSize;
  int64_t srows = box.rows, scols = box.cols / quant::kMxfp8BlockSize;
  uint64_t esc = 1;
  if (f.kind == FormatKind::kFp8Block) {
    const size_t seg = SegmentAt(g, g.dim == 0 ? row0 : col0);
    const Segment& s = g.segments[seg];
    const int64_t along = g.dim == 0 ? f.block.rows : f.block.cols;
    const int64_t first = sl.segment_start[seg] +
                          ((g.dim == 0 ? row0 : col0) - s.local_start) / along;
    srow = g.dim == 0 ? first : 0;
    scol = g.dim == 0 ? 0 : first;
    const quant::GridShape grid = quant::BlockGrid(box.rows, box.cols, f.block);
    srows = grid.rows, scols = grid.cols, esc = 4;
  }
  out.push_back(Runs(dst_->scales(p) + (srow * sl.cols + scol) * esc,
                     scols * esc, srows, sl.cols * esc));
  return out;
}

Result<std::vector<MutBlock>> FormatTransform::PrepareRecv(const TransferOp& op,
                                                           const Piece& piece) {
  const uint32_t p = piece.dst_param;
  if (dst_ == nullptr || dst_->data().data(p) == nullptr) {
    return Internal("transform: rank " + std::to_string(op.dst_rank) +
                    " holds no destination shard of " + spec_.params[p].name);
  }
  const ParamFormat& f = formats_.params[p];
  const uint64_t es = DTypeSize(f.src_dtype);
  if (f.side == ConvertSide::kSend) {
    if (f.kind != FormatKind::kPlain) return PlaceQuantized(piece);
    const Piece r = Rescaled(piece, es, DTypeSize(f.dtype));
    return std::vector<MutBlock>{{dst_->data().data(p) + r.dst_offset,
                                  r.run_bytes, r.nruns, r.dst_stride}};
  }
  if (f.kind == FormatKind::kPlain) {
    std::span<std::byte> wire = scratch_.Allocate(piece.bytes());
    return std::vector<MutBlock>{{wire.data(), wire.size(), 1, wire.size()}};
  }
  Staging& s = staging_[p];
  return std::vector<MutBlock>{{s.bytes.data() + piece.dst_offset,
                                piece.run_bytes, piece.nruns,
                                piece.dst_stride}};
}

Status FormatTransform::FinalizeRecv(const TransferOp&, const Piece& piece,
                                     std::span<const MutBlock> blocks) {
  const uint32_t p = piece.dst_param;
  const ParamFormat& f = formats_.params[p];
  if (f.side == ConvertSide::kSend) return OkStatus();
  if (f.kind != FormatKind::kPlain) {
    staging_[p].received += piece.bytes();
    return OkStatus();
  }
  const uint64_t es = DTypeSize(f.src_dtype);
  const Piece r = Rescaled(piece, es, DTypeSize(f.dtype));
  return CastRuns(blocks[0].base, piece.run_bytes, piece.nruns, piece.run_bytes,
                  f.src_dtype, dst_->data().data(p) + r.dst_offset, r.run_bytes,
                  r.dst_stride, f.dtype);
}

Status FormatTransform::Finish() {
  scratch_.Reset();
  for (uint32_t p = 0; p < staging_.size(); ++p) {
    Staging& s = staging_[p];
    if (s.bytes.empty()) continue;
    const ParamSpec& ps = spec_.params[p];
    if (s.received != s.bytes.size()) {
      const uint64_t got = s.received;
      s.received = 0;
      return Internal("transform: rank " + std::to_string(rank_) + " tensor " +
                      ps.name + ": received " + std::to_string(got) + " of " +
                      std::to_string(s.bytes.size()) +
                      " bytes before quantising (duplicate or missing "
                      "slices?)");
    }
    s.received = 0;
    const ShardGeometry& g = dst_->data().geometry(p);
    REFIT_RETURN_IF_ERROR(
        QuantizeShard(ps, formats_.params[p], s.geometry, s.bytes, g,
                      {dst_->data().data(p), dst_->data().shard_bytes(p)},
                      {dst_->scales(p), dst_->scale_layout(p).bytes}));
  }
  return OkStatus();
}

uint64_t FormatTransform::staging_bytes() const {
  uint64_t n = scratch_.held_bytes();
  for (const Staging& s : staging_) n += s.bytes.size();
  return n;
}

}  // namespace refit::exec
