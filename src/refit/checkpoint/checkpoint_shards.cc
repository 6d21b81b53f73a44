#include "refit/checkpoint/checkpoint_shards.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <span>
#include <string>
#include <unordered_set>

#include "refit/core/format/scale_layout.h"
#include "refit/core/quant/block_fp8.h"

namespace refit::exec {

namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ",";
    s += std::to_string(shape[i]);
  }
  s += "]";
  return s;
}

std::vector<int64_t> HfShape(const ParamSpec& p, size_t component) {
  std::vector<int64_t> shape = p.shape;
  shape[0] = p.hf_rows[component];
  return shape;
}

// Parameters whose dtype Megatron fixes to fp32 (router) take BF16/F16
// checkpoint tensors, widened exactly; every other dtype must match.
bool DTypeAccepted(const ParamSpec& p, DType file) {
  if (p.dtype == file) return true;
  return p.dtype_fixed && p.dtype == DType::kF32 &&
         (file == DType::kBF16 || file == DType::kF16);
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    exp = 113;
    while ((man & 0x400u) == 0) man <<= 1, --exp;
    bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Copies `count` elements, widening BF16/F16 to F32 where the dtypes differ.
void CopyElements(const std::byte* from, DType from_dtype, std::byte* to,
                  DType to_dtype, uint64_t count) {
  if (from_dtype == to_dtype) {
    std::memcpy(to, from, count * DTypeSize(to_dtype));
    return;
  }
  for (uint64_t i = 0; i < count; ++i) {
    uint16_t h;
    std::memcpy(&h, from + 2 * i, 2);
    uint32_t bits = static_cast<uint32_t>(h) << 16;
    if (from_dtype == DType::kF16) {
      const float f = HalfToFloat(h);
      std::memcpy(&bits, &f, 4);
    }
    std::memcpy(to + 4 * i, &bits, 4);
  }
}

int64_t InnerElements(const ParamSpec& p, size_t from_dim) {
  int64_t n = 1;
  for (size_t d = from_dim; d < p.shape.size(); ++d) n *= p.shape[d];
  return n;
}

// Walks logical rows [row, row + n) of a dim-0 layout as runs of rows of one
// HF tensor: fn(c, first row of tensor c, rows) for each run, in order.
template <typename Fn>
void ForEachRowRun(const ParamSpec& p, int64_t row, int64_t n, Fn&& fn) {
  int64_t group_rows = 0;
  for (int64_t r : p.hf_rows) group_rows += r / p.interleave_groups;
  while (n > 0) {
    const int64_t g = row / group_rows;
    int64_t within = row % group_rows;
    size_t c = 0;
    while (within >= p.hf_rows[c] / p.interleave_groups) {
      within -= p.hf_rows[c] / p.interleave_groups;
      ++c;
    }
    const int64_t per = p.hf_rows[c] / p.interleave_groups;
    const int64_t take = std::min(n, per - within);
    fn(c, g * per + within, take);
    row += take;
    n -= take;
  }
}

// Logical rows [row, row + n) of a dim-0 layout into `out` (contiguous).
void CopyRows(const ParamSpec& p, const std::vector<const io::TensorRef*>& hf,
              int64_t row, int64_t n, std::byte* out) {
  const int64_t inner = InnerElements(p, 1);
  const uint64_t out_row = inner * DTypeSize(p.dtype);
  ForEachRowRun(p, row, n, [&](size_t c, int64_t from, int64_t take) {
    const io::TensorRef& t = *hf[c];
    const uint64_t in_row = inner * DTypeSize(t.info->dtype);
    CopyElements(t.data + from * in_row, t.info->dtype, out, p.dtype,
                 take * inner);
    out += take * out_row;
  });
}

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "refit: internal error: %s\n", message.c_str());
  std::abort();
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One block-FP8 HF tensor: F8_E4M3 [rows, cols] and its F32 scale_inv
// [ceil(rows / B_r), ceil(cols / B_c)].
struct Fp8Tensor {
  const io::TensorRef* data;
  const io::TensorRef* scale;
  int64_t cols;
  quant::BlockShape block;
  int64_t scale_cols() const { return CeilDiv(cols, block.cols); }
};

// Dequantises the n x k box at (r0, c0) of `t` into `out` (n x k elements of
// `dtype`, row stride k) where the box lies in one block row or starts on a
// block-row boundary, and likewise for columns: then its blocks, aligned at
// (0, 0) of the box, are the tensor's and its scales are a sub-grid.
void DequantBox(const ParamSpec& p, const Fp8Tensor& t, int64_t r0, int64_t c0,
                int64_t n, int64_t k, DType dtype, std::byte* out) {
  const int64_t sr = CeilDiv(n, t.block.rows), sc = CeilDiv(k, t.block.cols);
  const int64_t es = static_cast<int64_t>(DTypeSize(dtype));
  std::vector<std::byte> scales;
  const std::byte* scale =
      t.scale->data +
      ((r0 / t.block.rows) * t.scale_cols() + c0 / t.block.cols) * 4;
  std::span<const std::byte> scale_span(scale, sr * sc * 4);
  std::vector<std::byte> data;
  std::span<const std::byte> data_span(t.data->data + r0 * t.cols + c0, n * k);
  if (k != t.cols && n > 1) {  // a column box: gather rows and scales
    data.resize(n * k);
    for (int64_t r = 0; r < n; ++r) {
      std::memcpy(data.data() + r * k, data_span.data() + r * t.cols, k);
    }
    data_span = data;
  }
  if (sc != t.scale_cols() && sr > 1) {
    scales.resize(sr * sc * 4);
    for (int64_t r = 0; r < sr; ++r) {
      std::memcpy(scales.data() + r * sc * 4, scale + r * t.scale_cols() * 4,
                  sc * 4);
    }
    scale_span = scales;
  }
  const Status st =
      quant::DequantizeBlockFp8(data_span, scale_span, n, k, t.block,
                                std::span<std::byte>(out, n * k * es), dtype);
  if (!st.ok()) Die("tensor " + p.name + ": " + st.message());
}

// Rows [r0, r0 + n) (all columns) of `t`, dequantised into `out`.
void DequantRows(const ParamSpec& p, const Fp8Tensor& t, int64_t r0, int64_t n,
                 std::byte* out) {
  const uint64_t out_row = t.cols * DTypeSize(p.dtype);
  while (n > 0) {
    const int64_t rest = t.block.rows - r0 % t.block.rows;
    const int64_t m = r0 % t.block.rows == 0 ? n : std::min(n, rest);
    DequantBox(p, t, r0, 0, m, t.cols, p.dtype, out);
    out += m * out_row;
    r0 += m;
    n -= m;
  }
}

// Columns [c0, c0 + n) of every row of `t`, dequantised into the rows of a
// [rows, local_cols] shard at column local_col.
void DequantColumns(const ParamSpec& p, const Fp8Tensor& t, int64_t c0,
                    int64_t n, int64_t local_cols, int64_t local_col,
                    std::byte* out) {
  const uint64_t es = DTypeSize(p.dtype);
  std::vector<std::byte> box;
  // Whole block rows at a time, the columns split where a block column
  // starts: the head up to the first boundary, then the rest.
  for (int64_t r = 0; r < p.shape[0]; r += t.block.rows) {
    const int64_t rows = std::min(t.block.rows, p.shape[0] - r);
    int64_t c = c0, left = n;
    while (left > 0) {
      const int64_t rest = t.block.cols - c % t.block.cols;
      const int64_t m = c % t.block.cols == 0 ? left : std::min(left, rest);
      box.resize(rows * m * es);
      DequantBox(p, t, r, c, rows, m, p.dtype, box.data());
      for (int64_t i = 0; i < rows; ++i) {
        std::memcpy(out + ((r + i) * local_cols + local_col + (c - c0)) * es,
                    box.data() + i * m * es, m * es);
      }
      c += m;
      left -= m;
    }
  }
}

Fp8Tensor Fp8Of(const ParamSpec& p, const BoundCheckpoint& ckpt, size_t param,
                size_t c) {
  return {ckpt.sources[param][c], ckpt.scales[param][c], p.shape[1],
          ckpt.block};
}

// True when the segments of `actual` equal those of `expected`.
bool SegmentsEqual(const ParamSpec& p, const ShardGeometry& g,
                   const std::byte* expected, const std::byte* actual) {
  const uint64_t esize = DTypeSize(p.dtype);
  for (const Segment& s : g.segments) {
    if (g.dim == 0) {
      const uint64_t row = InnerElements(p, 1) * esize;
      const uint64_t off = s.local_start * row, len = s.length * row;
      if (std::memcmp(expected + off, actual + off, len) != 0) return false;
      continue;
    }
    const uint64_t inner = InnerElements(p, 2) * esize;
    for (int64_t r = 0; r < p.shape[0]; ++r) {
      const uint64_t off = (r * g.local_shape[1] + s.local_start) * inner;
      if (std::memcmp(expected + off, actual + off, s.length * inner) != 0) {
        return false;
      }
    }
  }
  return true;
}

// Columns [col, col + n) of every row of a dim-1 (row-parallel) shard.
void CopyColumns(const ParamSpec& p, const io::TensorRef& t, int64_t col,
                 int64_t n, int64_t local_cols, int64_t local_col,
                 std::byte* out) {
  const int64_t inner = InnerElements(p, 2);
  const uint64_t in_esize = DTypeSize(t.info->dtype);
  const uint64_t out_esize = DTypeSize(p.dtype);
  for (int64_t r = 0; r < p.shape[0]; ++r) {
    const std::byte* from =
        t.data + ((r * p.shape[1] + col) * inner) * in_esize;
    std::byte* to = out + ((r * local_cols + local_col) * inner) * out_esize;
    CopyElements(from, t.info->dtype, to, p.dtype, n * inner);
  }
}

Status CheckShape(const ParamSpec& p, size_t c, const io::TensorRef* ref,
                  const std::string& where) {
  const std::string& name = p.hf_names[c];
  if (ref == nullptr) {
    return FailedPrecondition(where + ": missing tensor '" + name + "' (for " +
                              p.name + ")");
  }
  const std::vector<int64_t> want = HfShape(p, c);
  if (ref->info->shape != want) {
    return FailedPrecondition(where + ": tensor '" + name + "' has shape " +
                              ShapeString(ref->info->shape) + ", config says " +
                              ShapeString(want));
  }
  return OkStatus();
}

Status CheckTensor(const ParamSpec& p, size_t c, const io::TensorRef* ref,
                   const std::string& where) {
  REFIT_RETURN_IF_ERROR(CheckShape(p, c, ref, where));
  if (!DTypeAccepted(p, ref->info->dtype)) {
    return FailedPrecondition(where + ": tensor '" + p.hf_names[c] +
                              "' has dtype " +
                              std::string(DTypeName(ref->info->dtype)) +
                              ", expected " + std::string(DTypeName(p.dtype)));
  }
  return OkStatus();
}

constexpr char kScaleSuffix[] = "_scale_inv";

// Binds parameter `i` (`refs`: its HF tensors, present and shaped, at least
// one F8_E4M3) as block FP8: every part F8_E4M3 with an F32 scale of the
// block grid's shape. With kKeep the parameter's dtype becomes F8_E4M3.
Status BindFp8Param(ParamSpec& p, size_t i,
                    const std::vector<const io::TensorRef*>& refs,
                    const io::Checkpoint& ckpt, const std::string& where,
                    BoundCheckpoint& bound, StackedExperts& stacked,
                    int num_experts,
                    std::unordered_set<std::string>& scale_names) {
  const std::string fp8_name(DTypeName(DType::kF8E4M3));
  size_t first_fp8 = 0;
  while (refs[first_fp8]->info->dtype != DType::kF8E4M3) ++first_fp8;
  for (size_t c = 0; c < refs.size(); ++c) {
    if (refs[c]->info->dtype == DType::kF8E4M3) continue;
    return FailedPrecondition(
        where + ": tensor '" + p.hf_names[c] + "' has dtype " +
        std::string(DTypeName(refs[c]->info->dtype)) + " but '" +
        p.hf_names[first_fp8] + "' is " + fp8_name + " (both make " + p.name +
        "): a parameter's tensors must all be block FP8 or none");
  }
  const std::string& name0 = p.hf_names[0];
  if (p.shape.size() != 2) {
    return FailedPrecondition(where + ": tensor '" + name0 + "' is " +
                              fp8_name +
                              " but only 2-D weights can be block FP8");
  }
  if (bound.fp8 == Fp8Source::kKeep && p.interleave_groups > 1) {
    return FailedPrecondition(
        where + ": tensor '" + name0 + "' is block FP8 and its rows are " +
        "interleaved per query group into " + p.name +
        ", so --fp8-source keep cannot keep its blocks (use dequantise)");
  }
  if (bound.fp8 == Fp8Source::kDequantise && p.dtype != DType::kF32 &&
      p.dtype != DType::kBF16 && p.dtype != DType::kF16) {
    return FailedPrecondition(where + ": tensor '" + name0 +
                              "' is block FP8 and cannot be dequantised to " +
                              std::string(DTypeName(p.dtype)) + " (" + p.name +
                              ")");
  }
  const quant::BlockShape b = bound.block;
  for (size_t c = 0; c < refs.size(); ++c) {
    const std::string& name = p.hf_names[c];
    const std::string scale_name = name + kScaleSuffix;
    const std::vector<int64_t> want = {CeilDiv(p.hf_rows[c], b.rows),
                                       CeilDiv(p.shape[1], b.cols)};
    const io::TensorRef* scale = ckpt.Find(scale_name);
    if (scale == nullptr && p.expert >= 0) {  // stacked experts' scales
      REFIT_ASSIGN_OR_RETURN(scale, stacked.Find(ckpt, name, want, num_experts,
                                                 where, kScaleSuffix));
    }
    if (scale == nullptr) {
      return FailedPrecondition(where + ": missing tensor '" + scale_name +
                                "' (the block scales of " + fp8_name +
                                " tensor '" + name + "')");
    }
    const std::string blocks =
        std::to_string(b.rows) + "x" + std::to_string(b.cols) + " blocks";
    if (scale->info->shape != want) {
      return FailedPrecondition(
          where + ": tensor '" + scale_name + "' has shape " +
          ShapeString(scale->info->shape) + ", expected " + ShapeString(want) +
          " (scales of '" + name + "' " + ShapeString(HfShape(p, c)) + " in " +
          blocks + ")");
    }
    if (scale->info->dtype != DType::kF32) {
      return FailedPrecondition(
          where + ": tensor '" + scale_name + "' has dtype " +
          std::string(DTypeName(scale->info->dtype)) +
          ", expected F32 (block scales of '" + name + "')");
    }
    bound.scales[i].push_back(scale);
    scale_names.insert(scale_name);
  }
  bound.sources[i] = refs;
  if (bound.fp8 == Fp8Source::kKeep) p.dtype = DType::kF8E4M3;
  return OkStatus();
}

// An HF tensor the spec does not use: MTP layers, a tied lm_head and RoPE
// inv_freq buffers are skipped; a vision tower is refused by name; anything
// else is an error.
Status ClassifyExtra(const ModelSpec& spec, const std::string& name,
                     const std::string& where, BoundCheckpoint& bound) {
  static const std::regex kLayer(
      R"(^(?:language_model\.)?model\.layers\.(\d+)\.)");
  std::smatch m;
  if (std::regex_search(name, m, kLayer) &&
      std::stoll(m[1].str()) >= spec.num_layers) {
    bound.skipped.push_back(name);
    return OkStatus();
  }
  const bool tied_head =
      spec.tied_embeddings && name.find("lm_head.weight") != std::string::npos;
  const bool rope_buffer = name.ends_with("rotary_emb.inv_freq");
  if (tied_head || rope_buffer) {
    bound.skipped.push_back(name);
    return OkStatus();
  }
  if (name.starts_with("vision_model.") ||
      name.starts_with("multi_modal_projector.")) {
    return Unimplemented(where + ": tensor '" + name +
                         "' belongs to the vision tower, which refit does not "
                         "refit (text decoder only)");
  }
  return FailedPrecondition(where + ": tensor '" + name +
                            "' is not part of the " + spec.architecture +
                            " model refit builds from config.json");
}

}  // namespace

Result<BoundCheckpoint> BindCheckpoint(ModelSpec& spec,
                                       const io::Checkpoint& ckpt,
                                       Fp8Source fp8) {
  const std::string where = "checkpoint " + ckpt.path();
  if (!spec.dtype_from_config && !spec.params.empty()) {
    const io::TensorRef* ref = ckpt.Find(spec.params[0].hf_names[0]);
    if (ref != nullptr && ref->info->dtype != DType::kF8E4M3) {
      BindCheckpointDType(spec, ref->info->dtype);
    }
  }
  BoundCheckpoint bound;
  if (spec.fp8_block) {
    bound.block = {spec.fp8_block->first, spec.fp8_block->second};
  }
  bound.fp8 = fp8;
  bound.sources.resize(spec.params.size());
  bound.scales.resize(spec.params.size());
  std::unordered_set<std::string> scale_names;
  auto stacked = std::make_shared<StackedExperts>();
  bound.stacked = stacked;
  std::vector<const io::TensorRef*> refs;
  for (size_t i = 0; i < spec.params.size(); ++i) {
    ParamSpec& p = spec.params[i];
    refs.clear();
    bool any_fp8 = false;
    for (size_t c = 0; c < p.hf_names.size(); ++c) {
      const io::TensorRef* ref = ckpt.Find(p.hf_names[c]);
      if (ref == nullptr && p.expert >= 0) {
        REFIT_ASSIGN_OR_RETURN(ref,
                               stacked->Find(ckpt, p.hf_names[c], HfShape(p, c),
                                             spec.num_experts, where));
      }
      REFIT_RETURN_IF_ERROR(CheckShape(p, c, ref, where));
      any_fp8 |=
          ref->info->dtype == DType::kF8E4M3 && p.dtype != DType::kF8E4M3;
      refs.push_back(ref);
    }
    if (any_fp8) {
      REFIT_RETURN_IF_ERROR(BindFp8Param(p, i, refs, ckpt, where, bound,
                                         *stacked, spec.num_experts,
                                         scale_names));
      continue;
    }
    for (size_t c = 0; c < p.hf_names.size(); ++c) {
      REFIT_RETURN_IF_ERROR(CheckTensor(p, c, refs[c], where));
    }
    bound.sources[i] = refs;
  }
  const auto index = HfNameIndex(spec);
  for (const std::string& name : ckpt.Names()) {
    if (index.count(name) != 0 || scale_names.count(name) != 0 ||
        stacked->Uses(name)) {
      continue;
    }
    if (name.ends_with(kScaleSuffix)) {
      const std::string base =
          name.substr(0, name.size() - (sizeof(kScaleSuffix) - 1));
      const io::TensorRef* ref = ckpt.Find(base);
      if (index.count(base) != 0 && ref != nullptr) {
        return FailedPrecondition(
            where + ": tensor '" + name + "' holds block scales but '" + base +
            "' has dtype " + std::string(DTypeName(ref->info->dtype)) +
            ", not F8_E4M3");
      }
    }
    REFIT_RETURN_IF_ERROR(ClassifyExtra(spec, name, where, bound));
  }
  return bound;
}

void FillShard(const ParamSpec& p, const std::vector<const io::TensorRef*>& hf,
               const ShardGeometry& g, std::byte* out) {
  if (p.dtype != DType::kF8E4M3 && !hf.empty() &&
      hf[0]->info->dtype == DType::kF8E4M3) {
    Die("FillShard of block-FP8 parameter " + p.name +
        " needs its scales to dequantise: call FillShard(p, ckpt, param, g, "
        "out)");
  }
  const uint64_t esize = DTypeSize(p.dtype);
  for (const Segment& s : g.segments) {
    if (g.dim == 0) {
      const uint64_t row = InnerElements(p, 1) * esize;
      CopyRows(p, hf, s.global_start, s.length, out + s.local_start * row);
    } else {
      CopyColumns(p, *hf[0], s.global_start, s.length, g.local_shape[1],
                  s.local_start, out);
    }
  }
}

void FillShard(const ParamSpec& p, const BoundCheckpoint& ckpt, size_t param,
               const ShardGeometry& g, std::byte* out) {
  if (!ckpt.quantised(param) || p.dtype == DType::kF8E4M3) {
    FillShard(p, ckpt.sources[param], g, out);
    return;
  }
  const uint64_t esize = DTypeSize(p.dtype);
  for (const Segment& s : g.segments) {
    if (g.dim == 0) {
      std::byte* to = out + s.local_start * p.shape[1] * esize;
      ForEachRowRun(p, s.global_start, s.length,
                    [&](size_t c, int64_t from, int64_t take) {
                      DequantRows(p, Fp8Of(p, ckpt, param, c), from, take, to);
                      to += take * p.shape[1] * esize;
                    });
    } else {
      DequantColumns(p, Fp8Of(p, ckpt, param, 0), s.global_start, s.length,
                     g.local_shape[1], s.local_start, out);
    }
  }
}

void FillShardScales(const ParamSpec& p, const BoundCheckpoint& ckpt,
                     size_t param, const ShardGeometry& g, std::byte* out) {
  if (!ckpt.quantised(param)) {
    Die("FillShardScales of " + p.name + ", which is not block FP8");
  }
  if (g.dim == 0 && p.interleave_groups > 1) {
    Die("FillShardScales of " + p.name +
        ": its FP8 blocks are interleaved per query group");
  }
  ParamFormat f;
  f.kind = FormatKind::kFp8Block;
  f.dtype = DType::kF8E4M3;
  f.src_dtype = p.dtype;
  f.block = ckpt.block;
  const ScaleLayout layout = ScaleLayoutOf(p, f, g);
  const ShardGeometry split = SplitAtBlockParts(p, g);
  const std::vector<int64_t> bounds = BlockPartBounds(p, split.dim);
  const int64_t br = ckpt.block.rows, bc = ckpt.block.cols;
  for (size_t i = 0; i < split.segments.size(); ++i) {
    const Segment& s = split.segments[i];
    const size_t part =
        std::upper_bound(bounds.begin(), bounds.end(), s.global_start) -
        bounds.begin() - 1;
    const int64_t base = bounds[part];
    const int64_t end = s.global_start + s.length - base;
    if (split.dim == 0) {  // scale rows of HF tensor `part`, all columns
      const int64_t first = (s.global_start - base) / br;
      const uint64_t row = layout.cols * 4;
      std::memcpy(out + layout.segment_start[i] * row,
                  ckpt.scales[param][part]->data + first * row,
                  (CeilDiv(end, br) - first) * row);
      continue;
    }
    const int64_t first = s.global_start / bc, n = CeilDiv(end, bc) - first;
    const int64_t hf_cols = CeilDiv(p.shape[1], bc);
    for (int64_t r = 0; r < layout.rows; ++r) {
      std::memcpy(out + (r * layout.cols + layout.segment_start[i]) * 4,
                  ckpt.scales[param][0]->data + (r * hf_cols + first) * 4,
                  n * 4);
    }
  }
}

bool ShardMatches(const ParamSpec& p,
                  const std::vector<const io::TensorRef*>& hf,
                  const ShardGeometry& g, const std::byte* actual,
                  std::vector<std::byte>& scratch) {
  scratch.resize(g.LocalElements() * DTypeSize(p.dtype));
  FillShard(p, hf, g, scratch.data());
  return SegmentsEqual(p, g, scratch.data(), actual);
}

bool ShardMatches(const ParamSpec& p, const BoundCheckpoint& ckpt, size_t param,
                  const ShardGeometry& g, const std::byte* actual,
                  std::vector<std::byte>& scratch) {
  scratch.resize(g.LocalElements() * DTypeSize(p.dtype));
  FillShard(p, ckpt, param, g, scratch.data());
  return SegmentsEqual(p, g, scratch.data(), actual);
}

void FillArena(const ModelSpec& spec, const BoundCheckpoint& ckpt,
               const ShardArena& arena) {
  for (uint32_t p : arena.params()) {
    FillShard(spec.params[p], ckpt, p, arena.geometry(p), arena.data(p));
  }
}

void MarkWrongShards(const ModelSpec& spec, const BoundCheckpoint& ckpt,
                     const ShardArena& arena, std::vector<bool>& wrong) {
  std::vector<std::byte> scratch;
  for (uint32_t p : arena.params()) {
    if (!ShardMatches(spec.params[p], ckpt, p, arena.geometry(p), arena.data(p),
                      scratch)) {
      wrong[p] = true;
    }
  }
}

SourceScales KeptSourceScales(const ModelSpec& spec, const FormatPlan& formats,
                              const BoundCheckpoint& ckpt,
                              const ShardArena& arena) {
  SourceScales out;
  out.shards = &arena;
  out.scales =
      ShardScales::ForArena(spec, formats, arena, ShardScales::Side::kSource);
  for (uint32_t p : arena.params()) {
    if (std::byte* d = out.scales.data(p)) {
      FillShardScales(spec.params[p], ckpt, p, arena.geometry(p), d);
    }
  }
  return out;
}

}  // namespace refit::exec
