#include "refit/verify/dst_reference.h"

#include <cstring>

#include "refit/core/quant/float_cast.h"

namespace refit::exec {

Status ExpectedShard(const ParamSpec& p, const ParamFormat& f,
                     const BoundCheckpoint& ckpt, size_t param,
                     const ShardGeometry& g, std::vector<std::byte>& data,
                     std::vector<std::byte>& scales) {
  scales.assign(ScaleLayoutOf(p, f, g).bytes, std::byte{0});
  if (f.src_dtype == DType::kF8E4M3) {  // kept as stored
    data.assign(g.LocalElements(), std::byte{0});
    FillShard(p, ckpt, param, g, data.data());
    FillShardScales(p, ckpt, param, g, scales.data());
    return OkStatus();
  }
  const ShardGeometry recv = ExpandToBlocks(p, g, f.recv_block);
  std::vector<std::byte> source(recv.LocalElements() * DTypeSize(f.src_dtype));
  FillShard(p, ckpt, param, recv, source.data());
  data.assign(g.LocalElements() * DTypeSize(f.dtype), std::byte{0});
  if (f.kind != FormatKind::kPlain) {
    return QuantizeShard(p, f, recv, source, g, data, scales);
  }
  if (f.dtype == f.src_dtype) {
    data = std::move(source);
    return OkStatus();
  }
  return quant::CastBuffer(source, f.src_dtype, data, f.dtype);
}

namespace {

// True when `a` and `b`, two local shards of geometry `g` with `esize`-byte
// elements, agree on every segment (padding rows, which no refit writes, are
// not compared).
bool SegmentsEqual(const ShardGeometry& g, size_t esize, const std::byte* a,
                   const std::byte* b) {
  uint64_t inner = esize;
  for (size_t d = g.dim + 1; d < g.local_shape.size(); ++d) {
    inner *= g.local_shape[d];
  }
  const int64_t outer = g.dim == 0 ? 1 : g.local_shape[0];
  const uint64_t row = g.dim == 0 ? 0 : g.local_shape[1] * inner;
  for (const Segment& s : g.segments) {
    for (int64_t r = 0; r < outer; ++r) {
      const uint64_t off = r * row + s.local_start * inner;
      if (std::memcmp(a + off, b + off, s.length * inner) != 0) return false;
    }
  }
  return true;
}

}  // namespace

void MarkWrongDstShards(const ModelSpec& spec, const FormatPlan& formats,
                        const BoundCheckpoint& ckpt, const DstTensors& dst,
                        std::vector<bool>& wrong) {
  std::vector<std::byte> data, scales;
  const ShardArena& arena = dst.data();
  for (uint32_t p : arena.params()) {
    const ParamFormat& f = formats.params[p];
    if (!f.converts()) {
      if (!ShardMatches(spec.params[p], ckpt, p, arena.geometry(p),
                        arena.data(p), data)) {
        wrong[p] = true;
      }
      continue;
    }
    const Status st = ExpectedShard(spec.params[p], f, ckpt, p,
                                    arena.geometry(p), data, scales);
    const bool same =
        st.ok() && data.size() == arena.shard_bytes(p) &&
        SegmentsEqual(arena.geometry(p), DTypeSize(f.dtype), data.data(),
                      arena.data(p)) &&
        (scales.empty() ||
         std::memcmp(scales.data(), dst.scales(p), scales.size()) == 0);
    if (!same) wrong[p] = true;
  }
}

}  // namespace refit::exec
