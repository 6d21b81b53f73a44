#include "refit/exec/format_transform.h"

#include <new>
#include <string>
#include <utility>

#include "refit/core/quant/block_grid.h"
#include "refit/core/quant/mxfp8.h"

namespace refit::exec {

namespace {

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

// Where a box of whole blocks sits in a shard: its data (byte offset of its
// first element, rows x cols of 1-byte elements in rows of k_local) and its
// scales (byte offset, scale_rows runs of scale_run bytes).
struct BoxPlace {
  int64_t data = 0, rows = 0, cols = 0, k_local = 0;
  int64_t scale = 0, scale_rows = 0, scale_run = 0, scale_size = 1;
};

// The box of `box` elements starting `offset` bytes (of f.src_dtype
// elements) into shard `shard`, whose scales are laid out as `sl`.
BoxPlace Locate(const ParamSpec& p, const ParamFormat& f,
                const ShardGeometry& shard, const ScaleLayout& sl,
                uint64_t offset, const PieceBox& box) {
  const ShardGeometry g = SplitAtBlockParts(p, shard);
  BoxPlace at;
  at.k_local = g.local_shape[1];
  at.data = offset / DTypeSize(f.src_dtype);
  at.rows = box.rows;
  at.cols = box.cols;
  const int64_t row0 = at.data / at.k_local, col0 = at.data % at.k_local;
  if (f.kind == FormatKind::kMxfp8) {
    at.scale = row0 * sl.cols + col0 / quant::kMxfp8BlockSize;
    at.scale_rows = box.rows;
    at.scale_run = box.cols / quant::kMxfp8BlockSize;
    return at;
  }
  const int64_t along = g.dim == 0 ? f.block.rows : f.block.cols;
  const int64_t local = g.dim == 0 ? row0 : col0;
  const size_t seg = SegmentAt(g, local);
  const int64_t first =
      sl.segment_start[seg] + (local - g.segments[seg].local_start) / along;
  const quant::GridShape grid = quant::BlockGrid(box.rows, box.cols, f.block);
  at.scale_size = 4;
  at.scale = (g.dim == 0 ? first * sl.cols : first) * 4;
  at.scale_rows = grid.rows;
  at.scale_run = grid.cols * 4;
  return at;
}

// A cast within one rank: straight from the source shard into the
// destination, with nothing between (PrepareRecv and FinalizeRecv then have
// nothing to do).
bool IsLocalCast(const TransferOp& op, const ParamFormat& f) {
  return op.src_rank == op.dst_rank && f.kind == FormatKind::kPlain &&
         f.converts();
}

}  // namespace

namespace {

// The staging layout of a receiver-side quantised shard of `p` (format `f`,
// destination geometry `g`): widened to whole blocks.
ShardGeometry StagingGeometry(const ParamSpec& p, const ParamFormat& f,
                              const ShardGeometry& g) {
  return ExpandToBlocks(p, g, f.recv_block);
}

bool QuantisedOnReceive(const ParamFormat& f) {
  return f.kind != FormatKind::kPlain && f.side == ConvertSide::kRecv;
}

}  // namespace

uint64_t FormatTransform::ReceiveStagingBytes(const ModelSpec& spec,
                                              const FormatPlan& formats,
                                              const DstTensors& dst) {
  uint64_t bytes = 0;
  for (uint32_t p : dst.data().params()) {
    const ParamFormat& f = formats.params[p];
    if (!QuantisedOnReceive(f)) continue;
    bytes += StagingGeometry(spec.params[p], f, dst.data().geometry(p))
                 .LocalElements() *
             DTypeSize(f.src_dtype);
  }
  return bytes;
}

FormatTransform::FormatTransform(const ModelSpec& spec,
                                 const FormatPlan& formats, DstTensors* dst,
                                 int rank, const SourceScales* src)
    : spec_(spec),
      formats_(formats),
      dst_(dst),
      src_(src),
      rank_(rank),
      staging_(spec.params.size()) {
  if (dst_ == nullptr) return;
  // Every receiver-side quantised shard is staged up front, so that Finish
  // also catches a shard that received nothing.
  for (uint32_t p : dst_->data().params()) {
    const ParamFormat& f = formats_.params[p];
    if (!QuantisedOnReceive(f)) continue;
    Staging& s = staging_[p];
    s.geometry = StagingGeometry(spec_.params[p], f, dst_->data().geometry(p));
    s.size = s.geometry.LocalElements() * DTypeSize(f.src_dtype);
  }
  if (!AllocateStaging().ok()) throw std::bad_alloc();
}

Status FormatTransform::AllocateStaging() {
  for (Staging& s : staging_) {
    if (s.size == 0 || s.bytes.data() != nullptr) continue;
    REFIT_ASSIGN_OR_RETURN(s.bytes, kernels_->Allocate(s.size));
  }
  return OkStatus();
}

Status FormatTransform::UseMemory(MemoryKind kind) {
  if (kind != kernels_->memory()) {
    std::unique_ptr<FormatKernels> device;
    if (kind == MemoryKind::kCuda) {
      REFIT_ASSIGN_OR_RETURN(device, CudaFormatKernels());
    } else if (kind != MemoryKind::kHost) {
      return Unimplemented("transform: rank " + std::to_string(rank_) + ": " +
                           std::string(MemoryKindName(kind)) +
                           " memory has no format kernels");
    }
    FormatKernels* k = device ? device.get() : &HostFormatKernels();
    // Every buffer is freed by the kernels that allocated it, before they go.
    for (Staging& s : staging_) s.bytes = KernelBuffer();
    scratch_ = WireBuffers(k);
    shard_scratch_ = WireBuffers(k);
    device_kernels_ = std::move(device);
    kernels_ = k;
  }
  return AllocateStaging();
}

Status FormatTransform::CastRuns(const std::byte* src, uint64_t run,
                                 uint64_t nruns, uint64_t stride, DType from,
                                 std::byte* dst, uint64_t dst_stride,
                                 DType to) {
  return kernels_->Cast2D(src, stride, from, dst, dst_stride, to,
                          run / DTypeSize(from), nruns);
}

bool FormatTransform::ShouldTransform(uint32_t dst_param) const {
  return formats_.params[dst_param].converts();
}

Result<std::vector<ConstBlock>> FormatTransform::PrepareSend(
    const TransferOp& op, const Piece& piece, const std::byte* src) {
  const ParamFormat& f = formats_.params[piece.dst_param];
  const ConstBlock direct{src + piece.src_offset, piece.run_bytes, piece.nruns,
                          piece.src_stride};
  if (IsLocalCast(op, f)) {
    REFIT_RETURN_IF_ERROR(CastLocal(piece, src));
    return std::vector<ConstBlock>{};
  }
  if (f.side == ConvertSide::kRecv) return std::vector<ConstBlock>{direct};
  if (f.src_dtype == DType::kF8E4M3) return SendKept(piece, src);
  if (f.kind != FormatKind::kPlain) return Quantize(piece, src);
  const uint64_t es = DTypeSize(f.src_dtype), ed = DTypeSize(f.dtype);
  const uint64_t run = piece.run_bytes / es * ed;
  REFIT_ASSIGN_OR_RETURN(const std::span<std::byte> wire,
                         scratch_.Allocate(run * piece.nruns));
  REFIT_RETURN_IF_ERROR(CastRuns(direct.base, piece.run_bytes, piece.nruns,
                                 piece.src_stride, f.src_dtype, wire.data(),
                                 run, f.dtype));
  return std::vector<ConstBlock>{{wire.data(), wire.size(), 1, wire.size()}};
}

Status FormatTransform::CastLocal(const Piece& piece, const std::byte* src) {
  const ParamFormat& f = formats_.params[piece.dst_param];
  std::byte* dst =
      dst_ == nullptr ? nullptr : dst_->data().data(piece.dst_param);
  if (dst == nullptr) {
    return Internal("transform: rank " + std::to_string(rank_) +
                    " holds no destination shard of " +
                    spec_.params[piece.dst_param].name);
  }
  const Piece r = Rescaled(piece, DTypeSize(f.src_dtype), DTypeSize(f.dtype));
  return CastRuns(src + piece.src_offset, piece.run_bytes, piece.nruns,
                  piece.src_stride, f.src_dtype, dst + r.dst_offset,
                  r.dst_stride, f.dtype);
}

Result<std::vector<ConstBlock>> FormatTransform::Quantize(
    const Piece& piece, const std::byte* src) {
  const ParamFormat& f = formats_.params[piece.dst_param];
  const ParamSpec& p = spec_.params[piece.dst_param];
  const uint64_t es = DTypeSize(f.src_dtype);
  const PieceBox box = BoxOf(p, piece, es);
  const uint64_t elements = piece.bytes() / es;
  const std::byte* in = src + piece.src_offset;
  if (piece.nruns > 1) {  // gather the strided box first
    REFIT_ASSIGN_OR_RETURN(const std::span<std::byte> packed,
                           scratch_.Allocate(piece.bytes()));
    REFIT_RETURN_IF_ERROR(kernels_->Copy2D(in, piece.src_stride, packed.data(),
                                           piece.run_bytes, piece.run_bytes,
                                           piece.nruns));
    in = packed.data();
  }
  // Data and scales in buffers of their own (F32 scales aligned for the
  // device); on the wire one after the other.
  const uint64_t scale_bytes = BoxScaleBytes(f, box.rows, box.cols);
  REFIT_ASSIGN_OR_RETURN(const std::span<std::byte> data,
                         scratch_.Allocate(elements));
  REFIT_ASSIGN_OR_RETURN(const std::span<std::byte> scales,
                         scratch_.Allocate(scale_bytes));
  const Status st = kernels_->QuantizeBox(f, in, box.rows, box.cols,
                                          data.data(), scales.data(), false);
  if (!st.ok())
    return InvalidArgument("tensor " + p.name + ": " + st.message());
  return std::vector<ConstBlock>{
      {data.data(), data.size(), 1, data.size()},
      {scales.data(), scales.size(), 1, scales.size()}};
}

// Where a whole-block piece's data and scales go in the destination.
std::vector<MutBlock> FormatTransform::PlaceQuantized(
    const Piece& piece) const {
  const uint32_t p = piece.dst_param;
  const ParamFormat& f = formats_.params[p];
  const ScaleLayout& sl = dst_->scale_layout(p);
  const BoxPlace at =
      Locate(spec_.params[p], f, dst_->data().geometry(p), sl, piece.dst_offset,
             BoxOf(spec_.params[p], piece, DTypeSize(f.src_dtype)));
  return {Runs(dst_->data().data(p) + at.data, at.cols, at.rows, at.k_local),
          Runs(dst_->scales(p) + at.scale, at.scale_run, at.scale_rows,
               sl.cols * at.scale_size)};
}

// A kept block-FP8 piece: its FP8 bytes and the scales of its blocks, read
// in place from the source shard and its scale tensor.
Result<std::vector<ConstBlock>> FormatTransform::SendKept(
    const Piece& piece, const std::byte* src) const {
  const uint32_t p = piece.src_param;
  if (src_ == nullptr || src_->scales.data(p) == nullptr) {
    return Internal("transform: rank " + std::to_string(rank_) +
                    " holds no source scales of " + spec_.params[p].name);
  }
  const ParamFormat& f = formats_.params[piece.dst_param];
  const ScaleLayout& sl = src_->scales.layout(p);
  const BoxPlace at =
      Locate(spec_.params[p], f, src_->shards->geometry(p), sl,
             piece.src_offset, BoxOf(spec_.params[p], piece, 1));
  const MutBlock data =
      Runs(const_cast<std::byte*>(src) + at.data, at.cols, at.rows, at.k_local);
  const MutBlock scales = Runs(src_->scales.data(p) + at.scale, at.scale_run,
                               at.scale_rows, sl.cols * at.scale_size);
  return std::vector<ConstBlock>{
      {data.base, data.run_bytes, data.nruns, data.stride},
      {scales.base, scales.run_bytes, scales.nruns, scales.stride}};
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
  if (IsLocalCast(op, f)) return std::vector<MutBlock>{};  // done on send
  if (f.side == ConvertSide::kSend) {
    if (f.kind != FormatKind::kPlain) return PlaceQuantized(piece);
    const Piece r = Rescaled(piece, es, DTypeSize(f.dtype));
    return std::vector<MutBlock>{{dst_->data().data(p) + r.dst_offset,
                                  r.run_bytes, r.nruns, r.dst_stride}};
  }
  if (f.kind == FormatKind::kPlain) {
    REFIT_ASSIGN_OR_RETURN(const std::span<std::byte> wire,
                           scratch_.Allocate(piece.bytes()));
    return std::vector<MutBlock>{{wire.data(), wire.size(), 1, wire.size()}};
  }
  Staging& s = staging_[p];
  return std::vector<MutBlock>{{s.bytes.data() + piece.dst_offset,
                                piece.run_bytes, piece.nruns,
                                piece.dst_stride}};
}

Status FormatTransform::FinalizeRecv(const TransferOp& op, const Piece& piece,
                                     std::span<const MutBlock> blocks) {
  const uint32_t p = piece.dst_param;
  const ParamFormat& f = formats_.params[p];
  if (f.side == ConvertSide::kSend || IsLocalCast(op, f)) return OkStatus();
  if (f.kind != FormatKind::kPlain) {
    staging_[p].received += piece.bytes();
    return OkStatus();
  }
  const uint64_t es = DTypeSize(f.src_dtype);
  const Piece r = Rescaled(piece, es, DTypeSize(f.dtype));
  return CastRuns(blocks[0].base, piece.run_bytes, piece.nruns, piece.run_bytes,
                  f.src_dtype, dst_->data().data(p) + r.dst_offset,
                  r.dst_stride, f.dtype);
}

Status FormatTransform::Finish() {
  scratch_.Reset();
  for (uint32_t p = 0; p < staging_.size(); ++p) {
    Staging& s = staging_[p];
    if (s.size == 0) continue;
    const uint64_t got = std::exchange(s.received, 0);
    if (got != s.size) {
      return Internal("transform: rank " + std::to_string(rank_) + " tensor " +
                      spec_.params[p].name + ": received " +
                      std::to_string(got) + " of " + std::to_string(s.size) +
                      " bytes before quantising (duplicate or missing "
                      "slices?)");
    }
    REFIT_RETURN_IF_ERROR(QuantizeStaged(p));
  }
  return kernels_->Sync();  // the receive-side casts and quantisations
}

// Quantises staged shard `p` into its destination tensors, on the
// transform's kernels: block FP8 segment by segment (Fp8ShardSteps), MXFP8
// at once.
Status FormatTransform::QuantizeStaged(uint32_t p) {
  const ParamSpec& ps = spec_.params[p];
  const ParamFormat& f = formats_.params[p];
  const Staging& s = staging_[p];
  const ShardGeometry& g = dst_->data().geometry(p);
  std::byte* data = dst_->data().data(p);
  std::byte* scales = dst_->scales(p);
  const auto named = [&ps](const Status& st) {
    return st.ok() ? st
                   : InvalidArgument("tensor " + ps.name + ": " + st.message());
  };
  if (f.kind == FormatKind::kMxfp8) {
    return named(kernels_->QuantizeBox(f, s.bytes.data(), g.local_shape[0],
                                       g.local_shape[1], data, scales,
                                       f.swizzled));
  }
  REFIT_ASSIGN_OR_RETURN(const std::vector<SegmentQuantize> steps,
                         Fp8ShardSteps(ps, f, s.geometry, g));
  const auto copy = [this](const BoxCopy& c, const std::byte* from,
                           std::byte* to) {
    return kernels_->Copy2D(from + c.from, c.from_pitch, to + c.to, c.to_pitch,
                            c.width, c.rows);
  };
  for (const SegmentQuantize& step : steps) {
    shard_scratch_.Reset();
    const uint64_t elements = step.n * step.k;
    REFIT_ASSIGN_OR_RETURN(
        const std::span<std::byte> box,
        shard_scratch_.Allocate(elements * DTypeSize(f.src_dtype)));
    REFIT_ASSIGN_OR_RETURN(const std::span<std::byte> q,
                           shard_scratch_.Allocate(elements));
    REFIT_ASSIGN_OR_RETURN(
        const std::span<std::byte> sc,
        shard_scratch_.Allocate(BoxScaleBytes(f, step.n, step.k)));
    REFIT_RETURN_IF_ERROR(copy(step.gather, s.bytes.data(), box.data()));
    REFIT_RETURN_IF_ERROR(named(kernels_->QuantizeBox(
        f, box.data(), step.n, step.k, q.data(), sc.data(), false)));
    REFIT_RETURN_IF_ERROR(copy(step.data, q.data(), data));
    REFIT_RETURN_IF_ERROR(copy(step.scales, sc.data(), scales));
  }
  return OkStatus();
}

Result<std::vector<MutBlock>> FormatTransform::ForwardBlocks(
    const Piece& piece) {
  const uint32_t p = piece.dst_param;
  if (dst_ == nullptr || dst_->data().data(p) == nullptr) {
    return Internal("transform: rank " + std::to_string(rank_) +
                    " holds no destination shard of " + spec_.params[p].name +
                    " to forward");
  }
  const ParamFormat& f = formats_.params[p];
  if (QuantisedOnReceive(f)) {
    return Internal("transform: tensor " + spec_.params[p].name +
                    " is quantised on receipt and cannot be forwarded");
  }
  if (f.kind != FormatKind::kPlain) return PlaceQuantized(piece);
  const Piece r = Rescaled(piece, DTypeSize(f.src_dtype), DTypeSize(f.dtype));
  return std::vector<MutBlock>{{dst_->data().data(p) + r.dst_offset,
                                r.run_bytes, r.nruns, r.dst_stride}};
}

uint64_t FormatTransform::staging_bytes() const {
  uint64_t n = scratch_.held_bytes() + shard_scratch_.held_bytes();
  for (const Staging& s : staging_) n += s.bytes.size();
  return n;
}

}  // namespace refit::exec
