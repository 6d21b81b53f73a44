#include "refit/exec/checkpoint_shards.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <regex>
#include <string>

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

// Logical rows [row, row + n) of a dim-0 layout into `out` (contiguous).
void CopyRows(const ParamSpec& p, const std::vector<const io::TensorRef*>& hf,
              int64_t row, int64_t n, std::byte* out) {
  const int64_t inner = InnerElements(p, 1);
  const uint64_t out_row = inner * DTypeSize(p.dtype);
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
    const io::TensorRef& t = *hf[c];
    const uint64_t in_row = inner * DTypeSize(t.info->dtype);
    CopyElements(t.data + (g * per + within) * in_row, t.info->dtype, out,
                 p.dtype, take * inner);
    out += take * out_row;
    row += take;
    n -= take;
  }
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

Status CheckTensor(const ParamSpec& p, size_t c, const io::TensorRef* ref,
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
  if (!DTypeAccepted(p, ref->info->dtype)) {
    return FailedPrecondition(where + ": tensor '" + name + "' has dtype " +
                              std::string(DTypeName(ref->info->dtype)) +
                              ", expected " + std::string(DTypeName(p.dtype)));
  }
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
                                       const io::Checkpoint& ckpt) {
  const std::string where = "checkpoint " + ckpt.path();
  if (!spec.dtype_from_config && !spec.params.empty()) {
    const io::TensorRef* ref = ckpt.Find(spec.params[0].hf_names[0]);
    if (ref != nullptr) BindCheckpointDType(spec, ref->info->dtype);
  }
  BoundCheckpoint bound;
  bound.sources.resize(spec.params.size());
  for (size_t i = 0; i < spec.params.size(); ++i) {
    const ParamSpec& p = spec.params[i];
    for (size_t c = 0; c < p.hf_names.size(); ++c) {
      const io::TensorRef* ref = ckpt.Find(p.hf_names[c]);
      REFIT_RETURN_IF_ERROR(CheckTensor(p, c, ref, where));
      bound.sources[i].push_back(ref);
    }
  }
  const auto index = HfNameIndex(spec);
  for (const std::string& name : ckpt.Names()) {
    if (index.count(name) != 0) continue;
    REFIT_RETURN_IF_ERROR(ClassifyExtra(spec, name, where, bound));
  }
  return bound;
}

void FillShard(const ParamSpec& p, const std::vector<const io::TensorRef*>& hf,
               const ShardGeometry& g, std::byte* out) {
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

bool ShardMatches(const ParamSpec& p,
                  const std::vector<const io::TensorRef*>& hf,
                  const ShardGeometry& g, const std::byte* actual,
                  std::vector<std::byte>& scratch) {
  const uint64_t bytes = g.LocalElements() * DTypeSize(p.dtype);
  scratch.resize(bytes);
  FillShard(p, hf, g, scratch.data());
  const uint64_t esize = DTypeSize(p.dtype);
  for (const Segment& s : g.segments) {
    if (g.dim == 0) {
      const uint64_t row = InnerElements(p, 1) * esize;
      const uint64_t off = s.local_start * row, len = s.length * row;
      if (std::memcmp(scratch.data() + off, actual + off, len) != 0) {
        return false;
      }
      continue;
    }
    const uint64_t inner = InnerElements(p, 2) * esize;
    for (int64_t r = 0; r < p.shape[0]; ++r) {
      const uint64_t off = (r * g.local_shape[1] + s.local_start) * inner;
      if (std::memcmp(scratch.data() + off, actual + off, s.length * inner)) {
        return false;
      }
    }
  }
  return true;
}

void FillArena(const ModelSpec& spec, const BoundCheckpoint& ckpt,
               const ShardArena& arena) {
  for (uint32_t p : arena.params()) {
    FillShard(spec.params[p], ckpt.sources[p], arena.geometry(p),
              arena.data(p));
  }
}

void MarkWrongShards(const ModelSpec& spec, const BoundCheckpoint& ckpt,
                     const ShardArena& arena, std::vector<bool>& wrong) {
  std::vector<std::byte> scratch;
  for (uint32_t p : arena.params()) {
    if (!ShardMatches(spec.params[p], ckpt.sources[p], arena.geometry(p),
                      arena.data(p), scratch)) {
      wrong[p] = true;
    }
  }
}

}  // namespace refit::exec
