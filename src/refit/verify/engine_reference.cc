#include "refit/verify/engine_reference.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <utility>

#include "refit/core/quant/block_fp8.h"
#include "refit/core/quant/float_cast.h"
#include "refit/core/quant/mxfp8.h"
#include "refit/core/quant/scale_swizzle.h"

namespace refit::verify {
namespace {

using nlohmann::json;

constexpr int64_t kVocabPadding = 64;  // vLLM DEFAULT_VOCAB_PADDING_SIZE

std::string Str(int64_t v) { return std::to_string(v); }

// ---------------------------------------------------------------------------
// Config.

struct Config {
  std::string model_type;
  int64_t layers = 0;
  int64_t hidden = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab = 0;
  bool tied = false;
  int64_t experts = 0;  // 0: no routed experts in the config
  bool mla = false;
  bool q_lora = false;
};

bool IsNullOrAbsent(const json& j, const char* key) {
  return !j.contains(key) || j.at(key).is_null();
}

Result<int64_t> IntField(const json& j, const char* key) {
  if (!j.contains(key) || !j.at(key).is_number_integer()) {
    return InvalidArgument(std::string("config.json: field '") + key +
                           "' missing or not an integer");
  }
  const int64_t v = j.at(key).get<int64_t>();
  if (v <= 0) {
    return InvalidArgument(std::string("config.json: field '") + key +
                           "' = " + Str(v) + " (must be > 0)");
  }
  return v;
}

Result<Config> ParseConfig(std::string_view text, EngineFamily family) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return InvalidArgument("config.json: not a JSON object");
  }
  Config c;
  if (j.contains("model_type") && j.at("model_type").is_string()) {
    c.model_type = j.at("model_type").get<std::string>();
  }
  if (family != EngineFamily::kHf) {
    static const std::set<std::string> kSupported = {
        "llama",     "mistral", "qwen2",       "qwen3",       "qwen2_moe",
        "qwen3_moe", "mixtral", "deepseek_v2", "deepseek_v3", "kimi_k2",
        "glm4_moe",  "olmoe",   "minimax_m2"};
    if (c.model_type.empty()) {
      return InvalidArgument("config.json: field 'model_type' missing");
    }
    if (!kSupported.contains(c.model_type)) {
      return Unimplemented("config.json: model_type '" + c.model_type +
                           "' has no engine reference rules");
    }
  }
  REFIT_ASSIGN_OR_RETURN(c.layers, IntField(j, "num_hidden_layers"));
  if (family == EngineFamily::kHf) {
    // Only layer ownership and expert counts matter for an HF export.
  } else {
    REFIT_ASSIGN_OR_RETURN(c.hidden, IntField(j, "hidden_size"));
    REFIT_ASSIGN_OR_RETURN(c.heads, IntField(j, "num_attention_heads"));
    REFIT_ASSIGN_OR_RETURN(c.vocab, IntField(j, "vocab_size"));
    if (IsNullOrAbsent(j, "num_key_value_heads")) {
      c.kv_heads = c.heads;
    } else {
      REFIT_ASSIGN_OR_RETURN(c.kv_heads, IntField(j, "num_key_value_heads"));
    }
    if (IsNullOrAbsent(j, "head_dim")) {
      // 0 when not a whole number: an error only where q/k/v need it.
      c.head_dim = c.hidden % c.heads == 0 ? c.hidden / c.heads : 0;
    } else {
      REFIT_ASSIGN_OR_RETURN(c.head_dim, IntField(j, "head_dim"));
    }
    c.mla = !IsNullOrAbsent(j, "kv_lora_rank");
    c.q_lora = !IsNullOrAbsent(j, "q_lora_rank");
  }
  if (j.contains("tie_word_embeddings")) {
    if (!j.at("tie_word_embeddings").is_boolean()) {
      return InvalidArgument(
          "config.json: field 'tie_word_embeddings' not a boolean");
    }
    c.tied = j.at("tie_word_embeddings").get<bool>();
  }
  for (const char* key :
       {"n_routed_experts", "num_experts", "num_local_experts"}) {
    if (!IsNullOrAbsent(j, key)) {
      REFIT_ASSIGN_OR_RETURN(c.experts, IntField(j, key));
      break;
    }
  }
  return c;
}

// ---------------------------------------------------------------------------
// Source matrices and pieces of engine tensors.

// A source tensor (or a 2-D view of one expert of a stacked tensor), possibly
// block-FP8 quantised whole. A 1-D tensor is treated as [n, 1].
struct Mat {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  bool q = false;
  const std::byte* scale = nullptr;  // [gr, gc] scales of `ses` bytes when q
  int64_t gr = 0;
  int64_t gc = 0;
  size_t ses = 4;  // F32 block FP8, 1 (E8M0) MXFP8
  int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  int64_t cols() const {
    int64_t c = 1;
    for (size_t i = 1; i < shape.size(); ++i) c *= shape[i];
    return c;
  }
  size_t es() const { return DTypeSize(dtype); }
  size_t nbytes() const { return rows() * cols() * es(); }
};

// Part of an engine tensor: data and, when quantised, its scale rows.
struct Piece {
  std::vector<int64_t> shape;
  DType dtype = DType::kU8;
  std::vector<std::byte> data;
  bool q = false;
  std::vector<int64_t> sshape;
  std::vector<std::byte> scale;
  size_t ses = 4;  // bytes per scale
};

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

void AppendBytes(std::vector<std::byte>& out, const std::byte* p, size_t n) {
  out.insert(out.end(), p, p + n);
}

Piece Whole(const Mat& m) {
  Piece p;
  p.shape = m.shape;
  p.dtype = m.dtype;
  AppendBytes(p.data, m.data, m.nbytes());
  if (m.q) {
    p.q = true;
    p.ses = m.ses;
    p.sshape = {m.gr, m.gc};
    AppendBytes(p.scale, m.scale, static_cast<size_t>(m.gr * m.gc) * m.ses);
  }
  return p;
}

// Rows [a, b) of m, all columns; scale rows a / Br .. ceil(b / Br) - 1.
Piece RowsOf(const Mat& m, int64_t a, int64_t b, int64_t br) {
  Piece p;
  p.shape = m.shape.empty() ? std::vector<int64_t>{} : m.shape;
  if (!p.shape.empty()) p.shape[0] = b - a;
  p.dtype = m.dtype;
  const size_t row_bytes = m.cols() * m.es();
  AppendBytes(p.data, m.data + a * row_bytes, (b - a) * row_bytes);
  if (m.q) {
    const int64_t r0 = a / br;
    const int64_t r1 = CeilDiv(b, br);
    p.q = true;
    p.ses = m.ses;
    p.sshape = {r1 - r0, m.gc};
    AppendBytes(p.scale, m.scale + r0 * m.gc * m.ses, (r1 - r0) * m.gc * m.ses);
  }
  return p;
}

// Columns [a, b) of every row of a 2-D m; scale columns a / Bc ..
// ceil(b / Bc) - 1 of every scale row.
Piece ColsOf(const Mat& m, int64_t a, int64_t b, int64_t bc) {
  Piece p;
  p.shape = {m.rows(), b - a};
  p.dtype = m.dtype;
  const size_t es = m.es();
  for (int64_t r = 0; r < m.rows(); ++r) {
    AppendBytes(p.data, m.data + (r * m.cols() + a) * es, (b - a) * es);
  }
  if (m.q) {
    const int64_t c0 = a / bc;
    const int64_t c1 = CeilDiv(b, bc);
    p.q = true;
    p.ses = m.ses;
    p.sshape = {m.gr, c1 - c0};
    for (int64_t r = 0; r < m.gr; ++r) {
      AppendBytes(p.scale, m.scale + (r * m.gc + c0) * m.ses,
                  (c1 - c0) * m.ses);
    }
  }
  return p;
}

// Concatenates pieces along dim 0 (data and scales).
Result<Piece> ConcatRows(const std::string& name, std::vector<Piece> parts) {
  Piece out = std::move(parts.at(0));
  for (size_t i = 1; i < parts.size(); ++i) {
    Piece& p = parts[i];
    if (p.dtype != out.dtype || p.q != out.q ||
        p.shape.size() != out.shape.size() ||
        !std::equal(p.shape.begin() + 1, p.shape.end(),
                    out.shape.begin() + 1) ||
        (p.q && p.sshape[1] != out.sshape[1])) {
      return FailedPrecondition(name +
                                ": its parts differ in dtype, trailing "
                                "shape or quantisation");
    }
    out.shape[0] += p.shape[0];
    AppendBytes(out.data, p.data.data(), p.data.size());
    if (p.q) {
      out.sshape[0] += p.sshape[0];
      AppendBytes(out.scale, p.scale.data(), p.scale.size());
    }
  }
  return out;
}

// Stacks equal-shaped pieces along a new leading dim.
Result<Piece> Stack(const std::string& name, std::vector<Piece> parts) {
  Piece out;
  out.shape = parts.at(0).shape;
  out.shape.insert(out.shape.begin(), static_cast<int64_t>(parts.size()));
  out.dtype = parts[0].dtype;
  out.q = parts[0].q;
  out.ses = parts[0].ses;
  if (out.q) {
    out.sshape = parts[0].sshape;
    out.sshape.insert(out.sshape.begin(), static_cast<int64_t>(parts.size()));
  }
  for (Piece& p : parts) {
    if (p.dtype != out.dtype || p.q != out.q ||
        !std::equal(p.shape.begin(), p.shape.end(), out.shape.begin() + 1,
                    out.shape.end()) ||
        (p.q && !std::equal(p.sshape.begin(), p.sshape.end(),
                            out.sshape.begin() + 1, out.sshape.end()))) {
      return FailedPrecondition(name + ": experts differ in dtype or shape");
    }
    AppendBytes(out.data, p.data.data(), p.data.size());
    AppendBytes(out.scale, p.scale.data(), p.scale.size());
  }
  return out;
}

// ---------------------------------------------------------------------------
// Name parsing.

bool StartsWith(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}
bool EndsWith(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

std::optional<int64_t> ParseIndex(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

// "<prefix>.experts.<e>.<proj>.weight" -> {prefix, e, proj}.
struct ExpertName {
  std::string prefix;
  int64_t expert = 0;
  std::string proj;
};
std::optional<ExpertName> ParseExpertName(std::string_view rest) {
  const size_t at = rest.find(".experts.");
  if (at == std::string_view::npos || !EndsWith(rest, ".weight")) {
    return std::nullopt;
  }
  std::string_view tail = rest.substr(at + 9);  // "<e>.<proj>.weight"
  const size_t dot = tail.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const auto e = ParseIndex(tail.substr(0, dot));
  if (!e) return std::nullopt;
  std::string_view proj = tail.substr(dot + 1);
  proj.remove_suffix(7);
  return ExpertName{std::string(rest.substr(0, at)), *e, std::string(proj)};
}

// "<prefix>.experts.gate_up_proj" / "<prefix>.experts.down_proj".
std::optional<std::pair<std::string, std::string>> ParseStackedName(
    std::string_view rest) {
  for (std::string_view kind : {"gate_up_proj", "down_proj"}) {
    const std::string suffix = ".experts." + std::string(kind);
    if (EndsWith(rest, suffix)) {
      return std::make_pair(
          std::string(rest.substr(0, rest.size() - suffix.size())),
          std::string(kind));
    }
  }
  return std::nullopt;
}

bool IsRouter(std::string_view rest) {
  return rest == "mlp.gate.weight" ||
         rest == "mlp.gate.e_score_correction_bias" ||
         rest == "block_sparse_moe.gate.weight";
}

// ---------------------------------------------------------------------------
// The builder of one rank's tensors.

class Builder {
 public:
  Builder(const io::Checkpoint& ckpt, EngineFamily family, const Config& cfg,
          const EngineRefLayout& layout, const EngineQuant* quant)
      : ckpt_(ckpt), family_(family), cfg_(cfg), layout_(layout) {
    if (quant != nullptr && quant->quantised) quant_ = quant;
  }

  int tp_rank = 0, pp_rank = 0, ep_rank = 0, etp_rank = 0;

  // Block extents of the scales (MXFP8: 1 x 32).
  int64_t br() const {
    return quant_ && !quant_->mxfp8 ? quant_->block_rows : 1;
  }
  int64_t bc() const {
    if (quant_ == nullptr) return 1;
    return quant_->mxfp8 ? quant::kMxfp8BlockSize : quant_->block_cols;
  }

  Status Run();
  Result<std::vector<EngineTensor>> TakeOutput() {
    REFIT_RETURN_IF_ERROR(emit_error_);
    std::sort(out_.begin(), out_.end(),
              [](const EngineTensor& a, const EngineTensor& b) {
                return a.name < b.name;
              });
    return std::move(out_);
  }

 private:
  bool Quantised(std::string_view hf_name) const {
    return quant_ != nullptr && quant_->quantised(hf_name);
  }
  Result<DType> RouterDType(std::string_view rest) const;
  Result<Mat> Raw(const std::string& name) const;
  Result<Mat> Get(const std::string& name, bool allow_quant = true);
  Status Quantise(Mat& m, const std::string& hf_name);
  Status QuantiseMx(Mat& m, const std::string& hf_name);
  Status Swizzle(Piece& p) const;
  // Expert e of a stacked [E, R, C] tensor, rows [row0, row0 + nrows).
  Result<Mat> StackedView(const Mat& stacked, int64_t e, int64_t row0,
                          int64_t nrows);
  void Emit(const std::string& name, Piece p);
  Status Divides(const std::string& what, int64_t size, int64_t parts) const;

  Status Global(const std::vector<std::string>& names);
  Status Vocab(const std::string& out_name, const std::string& src_name);
  Status Layer(const std::string& prefix, std::set<std::string>& rest);
  Status LayerHf(const std::string& prefix, std::set<std::string>& rest);
  Status Attention(const std::string& prefix, std::set<std::string>& rest);
  // The logical experts this EP rank holds, by slot.
  Result<std::vector<int64_t>> HeldExperts(int64_t experts) const;
  Status Experts(const std::string& prefix, std::set<std::string>& rest);
  // An MTP layer (EngineRefLayout::mtp_layers).
  Status MtpLayer(const std::string& prefix, std::set<std::string>& rest);

  const io::Checkpoint& ckpt_;
  EngineFamily family_;
  const Config& cfg_;
  EngineRefLayout layout_;
  const EngineQuant* quant_ = nullptr;
  std::deque<std::vector<std::byte>> owned_;
  std::vector<EngineTensor> out_;
  Status emit_error_;  // the first error of Emit
};

Status Builder::Divides(const std::string& what, int64_t size,
                        int64_t parts) const {
  if (parts <= 0 || size % parts != 0) {
    return InvalidArgument(what + " = " + Str(size) + " is not divisible by " +
                           Str(parts));
  }
  return OkStatus();
}

// e_score_correction_bias: F32 in both engines. Gate weights: F32 where the
// engine allocates them so (MiniMax-M2 in both, minimax_m2.py
// params_dtype=torch.float32; GLM-4.x MoE in vLLM, glm4_moe.py
// nn.Linear(..., dtype=torch.float32)); otherwise the model dtype
// (ReplicatedLinear / GateLinear / MoEGate without a dtype), here the
// checkpoint's embedding dtype.
Result<DType> Builder::RouterDType(std::string_view rest) const {
  const bool f32 =
      EndsWith(rest, "e_score_correction_bias") ||
      cfg_.model_type == "minimax_m2" ||
      (family_ == EngineFamily::kVllm && cfg_.model_type == "glm4_moe");
  if (f32) return DType::kF32;
  const io::TensorRef* embed = ckpt_.Find("model.embed_tokens.weight");
  if (embed == nullptr) {
    return NotFound("checkpoint has no tensor model.embed_tokens.weight");
  }
  return embed->info->dtype;
}

Result<Mat> Builder::Raw(const std::string& name) const {
  const io::TensorRef* ref = ckpt_.Find(name);
  if (ref == nullptr) return NotFound("checkpoint has no tensor " + name);
  Mat m;
  m.name = name;
  m.dtype = ref->info->dtype;
  m.shape = ref->info->shape;
  m.data = ref->data;
  if (family_ != EngineFamily::kHf &&
      (m.dtype == DType::kF8E4M3 || m.dtype == DType::kF8E5M2)) {
    return Unimplemented("tensor " + name + " is stored as " +
                         std::string(DTypeName(m.dtype)) +
                         ": FP8 checkpoints are not supported");
  }
  return m;
}

// `m` now views F8_E4M3 `data` and its [gr, gc] scales of `ses` bytes.
void SetQuantised(Mat& m, const std::vector<std::byte>& data,
                  const std::vector<std::byte>& scale, int64_t gr, int64_t gc,
                  size_t ses) {
  m.dtype = DType::kF8E4M3;
  m.data = data.data();
  m.q = true;
  m.scale = scale.data();
  m.gr = gr;
  m.gc = gc;
  m.ses = ses;
}

Status Builder::Quantise(Mat& m, const std::string& hf_name) {
  if (m.shape.size() != 2) {
    return Unimplemented("block FP8 of " + hf_name + ": not a 2-D weight");
  }
  const int64_t n = m.shape[0], k = m.shape[1];
  if (quant_->mxfp8) return QuantiseMx(m, hf_name);
  quant::BlockFp8Options opts;
  opts.block = {quant_->block_rows, quant_->block_cols};
  if (opts.block.rows <= 0 || opts.block.cols <= 0) {
    return InvalidArgument("block FP8: block " + Str(opts.block.rows) + " x " +
                           Str(opts.block.cols) + " (extents must be > 0)");
  }
  const int64_t gr = CeilDiv(n, opts.block.rows);
  const int64_t gc = CeilDiv(k, opts.block.cols);
  std::vector<std::byte>& data = owned_.emplace_back(n * k);
  std::vector<std::byte>& scale = owned_.emplace_back(gr * gc * 4);
  const Status st =
      quant::QuantizeBlockFp8(std::span<const std::byte>(m.data, m.nbytes()),
                              m.dtype, n, k, opts, data, scale);
  if (!st.ok()) {
    return Status(st.code(), "block FP8 of " + hf_name + ": " + st.message());
  }
  SetQuantised(m, data, scale, gr, gc, 4);
  return OkStatus();
}

Status Builder::QuantiseMx(Mat& m, const std::string& hf_name) {
  const int64_t n = m.shape[0], k = m.shape[1];
  const int64_t gc = k / quant::kMxfp8BlockSize;
  std::vector<std::byte>& data = owned_.emplace_back(n * k);
  std::vector<std::byte>& scale = owned_.emplace_back(n * gc);
  const Status st =
      quant::QuantizeMxfp8(std::span<const std::byte>(m.data, m.nbytes()),
                           m.dtype, n, k, data, scale);
  if (!st.ok()) {
    return Status(st.code(), "MXFP8 of " + hf_name + ": " + st.message());
  }
  SetQuantised(m, data, scale, n, gc, 1);
  return OkStatus();
}

Result<Mat> Builder::Get(const std::string& name, bool allow_quant) {
  REFIT_ASSIGN_OR_RETURN(Mat m, Raw(name));
  if (allow_quant && Quantised(name)) REFIT_RETURN_IF_ERROR(Quantise(m, name));
  return m;
}

Result<Mat> Builder::StackedView(const Mat& stacked, int64_t e, int64_t row0,
                                 int64_t nrows) {
  Mat v;
  v.name = stacked.name + "[" + Str(e) + "]";
  v.dtype = stacked.dtype;
  v.shape = {nrows, stacked.shape[2]};
  v.data = stacked.data +
           ((e * stacked.shape[1] + row0) * stacked.shape[2]) * stacked.es();
  if (Quantised(stacked.name)) REFIT_RETURN_IF_ERROR(Quantise(v, v.name));
  return v;
}

void Builder::Emit(const std::string& name, Piece p) {
  if (p.q && quant_->mxfp8) {
    if (const Status st = Swizzle(p); !st.ok() && emit_error_.ok()) {
      emit_error_ = st;
    }
    out_.push_back(
        {name + "_scale", std::move(p.sshape), DType::kU8, std::move(p.scale)});
  } else if (p.q) {
    out_.push_back(
        {name + "_scale_inv", std::move(p.sshape), DType::kF32, p.scale});
  }
  out_.push_back({name, std::move(p.shape), p.dtype, std::move(p.data)});
}

// MXFP8 with swizzled scales: each [rows, K / 32] scale matrix of `p` (one,
// or one per expert of a stack) in the 128x4 layout, one after another.
Status Builder::Swizzle(Piece& p) const {
  if (!quant_->swizzled) return OkStatus();
  const size_t d = p.sshape.size();
  const int64_t rows = p.sshape[d - 2], cols = p.sshape[d - 1];
  const int64_t mats = d == 3 ? p.sshape[0] : 1;
  const int64_t bytes = quant::Swizzled128x4Bytes(rows, cols);
  std::vector<std::byte> out(mats * bytes);
  for (int64_t e = 0; e < mats; ++e) {
    const Status st = quant::Swizzle128x4(
        std::span<const std::byte>(p.scale).subspan(e * rows * cols,
                                                    rows * cols),
        rows, cols, std::span<std::byte>(out).subspan(e * bytes, bytes));
    if (!st.ok()) return Status(st.code(), "swizzle: " + st.message());
  }
  p.scale = std::move(out);
  p.sshape =
      d == 3 ? std::vector<int64_t>{mats, bytes} : std::vector<int64_t>{bytes};
  return OkStatus();
}

Status Builder::Vocab(const std::string& out_name,
                      const std::string& src_name) {
  REFIT_ASSIGN_OR_RETURN(Mat m, Get(src_name));
  if (family_ == EngineFamily::kHf) {
    Emit(out_name, Whole(m));
    return OkStatus();
  }
  if (m.q) {
    return Unimplemented("block FP8 of " + src_name +
                         ": a vocab-padded tensor cannot be quantised");
  }
  if (m.shape.size() != 2 || m.rows() != cfg_.vocab) {
    return FailedPrecondition(src_name + ": " + Str(m.rows()) +
                              " rows, config vocab_size " + Str(cfg_.vocab));
  }
  const int64_t v_pad = CeilDiv(cfg_.vocab, kVocabPadding) * kVocabPadding;
  REFIT_RETURN_IF_ERROR(
      Divides(src_name + ": padded vocab", v_pad, layout_.tp));
  const int64_t per = v_pad / layout_.tp;
  const int64_t a = tp_rank * per;
  const int64_t real = std::clamp<int64_t>(cfg_.vocab - a, 0, per);
  Piece p;
  p.shape = {per, m.cols()};
  p.dtype = m.dtype;
  const size_t row_bytes = m.cols() * m.es();
  p.data.assign(per * row_bytes, std::byte{0});
  if (real > 0) {
    std::memcpy(p.data.data(), m.data + a * row_bytes, real * row_bytes);
  }
  Emit(out_name, std::move(p));
  return OkStatus();
}

Status Builder::Global(const std::vector<std::string>& names) {
  const bool first = pp_rank == 0;
  const bool last = pp_rank == layout_.pp - 1;
  const std::string embed = "model.embed_tokens.weight";
  for (const std::string& n : names) {
    if (n == embed) {
      if (first) REFIT_RETURN_IF_ERROR(Vocab(n, n));
    } else if (n == "lm_head.weight") {
      if (last && !cfg_.tied) REFIT_RETURN_IF_ERROR(Vocab(n, n));
    } else if (n == "model.norm.weight") {
      if (last) {
        REFIT_ASSIGN_OR_RETURN(Mat m, Get(n));
        Emit(n, Whole(m));
      }
    } else if (first) {
      REFIT_ASSIGN_OR_RETURN(Mat m, Get(n));
      Emit(n, Whole(m));
    }
  }
  if (first && ckpt_.Find(embed) == nullptr) {
    return NotFound("checkpoint has no tensor " + embed);
  }
  if (last && !cfg_.tied && ckpt_.Find("lm_head.weight") == nullptr) {
    return NotFound(
        "checkpoint has no tensor lm_head.weight (tie_word_embeddings false)");
  }
  if (last && cfg_.tied && layout_.pp > 1) {
    REFIT_RETURN_IF_ERROR(Vocab("lm_head.weight", embed));
  }
  return OkStatus();
}

Status Builder::Attention(const std::string& prefix,
                          std::set<std::string>& rest) {
  const int tp = layout_.tp;
  const int r = tp_rank;
  if (cfg_.mla) {
    for (const char* base :
         {"self_attn.q_proj", "self_attn.q_b_proj", "self_attn.kv_b_proj"}) {
      for (const char* suffix : {".weight", ".bias"}) {
        const std::string name = std::string(base) + suffix;
        if (!rest.contains(name)) continue;
        rest.erase(name);
        REFIT_ASSIGN_OR_RETURN(Mat m, Get(prefix + name));
        REFIT_RETURN_IF_ERROR(Divides(prefix + name + " rows", m.rows(), tp));
        const int64_t per = m.rows() / tp;
        Emit(prefix + name, RowsOf(m, r * per, (r + 1) * per, br()));
      }
    }
    if (cfg_.q_lora) {
      const std::string qa = "self_attn.q_a_proj.weight";
      const std::string kva = "self_attn.kv_a_proj_with_mqa.weight";
      REFIT_ASSIGN_OR_RETURN(Mat mq, Get(prefix + qa));
      REFIT_ASSIGN_OR_RETURN(Mat mkv, Get(prefix + kva));
      rest.erase(qa);
      rest.erase(kva);
      const std::string out =
          prefix + (family_ == EngineFamily::kSglang
                        ? "self_attn.fused_qkv_a_proj_with_mqa.weight"
                        : "self_attn.fused_qkv_a_proj.weight");
      std::vector<Piece> parts;
      parts.push_back(Whole(mq));
      parts.push_back(Whole(mkv));
      REFIT_ASSIGN_OR_RETURN(Piece p, ConcatRows(out, std::move(parts)));
      Emit(out, std::move(p));
    }
    return OkStatus();
  }
  if (!rest.contains("self_attn.q_proj.weight")) return OkStatus();
  const int64_t nh = cfg_.heads, kv = cfg_.kv_heads, hd = cfg_.head_dim;
  if (hd == 0) {
    return InvalidArgument("config.json: hidden_size " + Str(cfg_.hidden) +
                           " not a multiple of num_attention_heads " + Str(nh) +
                           " (and no head_dim)");
  }
  REFIT_RETURN_IF_ERROR(Divides("num_attention_heads", nh, tp));
  int64_t kv_first = 0, kv_count = 1;
  if (tp <= kv) {
    REFIT_RETURN_IF_ERROR(Divides("num_key_value_heads", kv, tp));
    kv_count = kv / tp;
    kv_first = r * kv_count;
  } else {
    REFIT_RETURN_IF_ERROR(
        Divides("tp (over num_key_value_heads " + Str(kv) + ")", tp, kv));
    kv_first = r / (tp / kv);
  }
  const int64_t q_first = r * (nh / tp), q_count = nh / tp;
  for (const char* suffix : {".weight", ".bias"}) {
    const std::string q = std::string("self_attn.q_proj") + suffix;
    const std::string k = std::string("self_attn.k_proj") + suffix;
    const std::string v = std::string("self_attn.v_proj") + suffix;
    if (!rest.contains(q)) continue;
    REFIT_ASSIGN_OR_RETURN(Mat mq, Get(prefix + q));
    REFIT_ASSIGN_OR_RETURN(Mat mk, Get(prefix + k));
    REFIT_ASSIGN_OR_RETURN(Mat mv, Get(prefix + v));
    rest.erase(q);
    rest.erase(k);
    rest.erase(v);
    if (mq.rows() != nh * hd || mk.rows() != kv * hd || mv.rows() != kv * hd) {
      return FailedPrecondition(
          prefix + "self_attn.{q,k,v}_proj" + suffix + ": rows " +
          Str(mq.rows()) + ", " + Str(mk.rows()) + ", " + Str(mv.rows()) +
          " do not match heads " + Str(nh) + " / kv heads " + Str(kv) +
          " x head_dim " + Str(hd));
    }
    const std::string out = prefix + "self_attn.qkv_proj" + suffix;
    std::vector<Piece> parts;
    parts.push_back(RowsOf(mq, q_first * hd, (q_first + q_count) * hd, br()));
    parts.push_back(
        RowsOf(mk, kv_first * hd, (kv_first + kv_count) * hd, br()));
    parts.push_back(
        RowsOf(mv, kv_first * hd, (kv_first + kv_count) * hd, br()));
    REFIT_ASSIGN_OR_RETURN(Piece p, ConcatRows(out, std::move(parts)));
    Emit(out, std::move(p));
  }
  // MiniMax-M2's full-width QK norms: vLLM's MiniMaxText01RMSNormTP (and
  // SGLang's MiniMaxM2RMSNormTP) hold rank r's 1/tp of the vector
  // (minimax_m2.py); OLMoE's stay whole (everything else, below).
  if (cfg_.model_type == "minimax_m2") {
    for (const char* n :
         {"self_attn.q_norm.weight", "self_attn.k_norm.weight"}) {
      if (rest.erase(n) == 0) continue;
      REFIT_ASSIGN_OR_RETURN(Mat m, Get(prefix + n));
      REFIT_RETURN_IF_ERROR(Divides(prefix + n + " length", m.rows(), tp));
      const int64_t per = m.rows() / tp;
      Emit(prefix + n, RowsOf(m, r * per, (r + 1) * per, br()));
    }
  }
  return OkStatus();
}

Result<std::vector<int64_t>> Builder::HeldExperts(int64_t experts) const {
  std::vector<int64_t> held;
  const std::vector<int>& map = layout_.expert_placement;
  if (map.empty()) {
    REFIT_RETURN_IF_ERROR(Divides("expert count", experts, layout_.ep));
    const int64_t local = experts / layout_.ep;
    for (int64_t j = 0; j < local; ++j) held.push_back(ep_rank * local + j);
    return held;
  }
  if (map.size() % layout_.ep != 0) {
    return InvalidArgument("expert placement: " + Str(map.size()) +
                           " slots do not divide over ep");
  }
  const size_t slots = map.size() / layout_.ep;
  for (size_t j = 0; j < slots; ++j) {
    const int e = map[ep_rank * slots + j];
    if (e < 0 || e >= experts) {
      return InvalidArgument("expert placement: expert " + Str(e) +
                             " out of range");
    }
    held.push_back(e);
  }
  return held;
}

Status Builder::Experts(const std::string& prefix,
                        std::set<std::string>& rest) {
  // Expert groups by their prefix ("mlp", "block_sparse_moe").
  std::map<std::string, bool> groups;  // prefix -> stacked
  for (const std::string& n : rest) {
    if (auto e = ParseExpertName(n)) {
      groups[e->prefix] = false;
    } else if (auto s = ParseStackedName(n)) {
      groups[s->first] = true;
    }
  }
  if (groups.empty()) return OkStatus();
  const bool hf = family_ == EngineFamily::kHf;
  const int etp = hf ? 1 : layout_.etp;
  const int64_t E = cfg_.experts;
  if (E <= 0) {
    return InvalidArgument(
        "config.json: no expert count (n_routed_experts / num_experts / "
        "num_local_experts) for the experts of " +
        prefix + groups.begin()->first);
  }
  REFIT_ASSIGN_OR_RETURN(const std::vector<int64_t> held, HeldExperts(E));
  const int64_t e_local = static_cast<int64_t>(held.size());
  for (const auto& [g, stacked] : groups) {
    const std::string gp = prefix + g + ".experts.";
    // Names consumed by this group; every expert index must be < E.
    for (auto it = rest.begin(); it != rest.end();) {
      const auto e = ParseExpertName(*it);
      const auto s = ParseStackedName(*it);
      if ((e && e->prefix == g) || (s && s->first == g)) {
        if (e && e->expert >= E) {
          return FailedPrecondition("checkpoint tensor " + prefix + *it +
                                    ": expert index past the config's " +
                                    Str(E) + " experts");
        }
        it = rest.erase(it);
      } else {
        ++it;
      }
    }
    const bool mixtral = !stacked && ckpt_.Find(gp + "0.w1.weight") != nullptr;
    const std::string gate_n = mixtral ? "w1" : "gate_proj";
    const std::string up_n = mixtral ? "w3" : "up_proj";
    const std::string down_n = mixtral ? "w2" : "down_proj";
    if (hf && !stacked) {
      for (const int64_t ge : held) {
        for (const std::string& proj : {gate_n, up_n, down_n}) {
          const std::string n = gp + Str(ge) + "." + proj + ".weight";
          REFIT_ASSIGN_OR_RETURN(Mat m, Get(n));
          Emit(n, Whole(m));
        }
      }
      continue;
    }
    // Per expert: gate, up [I, H] and down [H, I] matrices.
    Mat gu_stacked, down_stacked;
    int64_t inter = 0;
    if (stacked) {
      REFIT_ASSIGN_OR_RETURN(gu_stacked, Raw(gp + "gate_up_proj"));
      REFIT_ASSIGN_OR_RETURN(down_stacked, Raw(gp + "down_proj"));
      const auto& gs = gu_stacked.shape;
      const auto& ds = down_stacked.shape;
      if (gs.size() != 3 || ds.size() != 3 || gs[0] != E || ds[0] != E ||
          gs[1] % 2 != 0 || ds[2] != gs[1] / 2 || ds[1] != gs[2]) {
        return FailedPrecondition(gp +
                                  "gate_up_proj / down_proj: shapes are "
                                  "not [E, 2I, H] / [E, H, I] with E = " +
                                  Str(E));
      }
      inter = gs[1] / 2;
    }
    std::vector<Piece> w13, w2;
    for (int64_t j = 0; j < e_local; ++j) {
      const int64_t ge = held[j];
      Mat gate, up, down;
      if (stacked) {
        REFIT_ASSIGN_OR_RETURN(gate, StackedView(gu_stacked, ge, 0, inter));
        REFIT_ASSIGN_OR_RETURN(up, StackedView(gu_stacked, ge, inter, inter));
        REFIT_ASSIGN_OR_RETURN(
            down, StackedView(down_stacked, ge, 0, down_stacked.shape[1]));
      } else {
        const std::string e = gp + Str(ge) + ".";
        REFIT_ASSIGN_OR_RETURN(gate, Get(e + gate_n + ".weight"));
        REFIT_ASSIGN_OR_RETURN(up, Get(e + up_n + ".weight"));
        REFIT_ASSIGN_OR_RETURN(down, Get(e + down_n + ".weight"));
        inter = gate.rows();
      }
      if (gate.shape.size() != 2 || up.shape != gate.shape ||
          down.shape.size() != 2 || down.shape[0] != gate.shape[1] ||
          down.shape[1] != gate.shape[0]) {
        return FailedPrecondition(gp + Str(ge) +
                                  ": expert shapes are not gate = up = [I, H], "
                                  "down = [H, I]");
      }
      REFIT_RETURN_IF_ERROR(
          Divides(gp + Str(ge) + " intermediate size", inter, etp));
      const int64_t per = inter / etp;
      const int64_t a = etp_rank * per, b = a + per;
      std::vector<Piece> parts;
      if (hf) {  // stacked, whole per expert
        parts.push_back(Whole(gate));
        parts.push_back(Whole(up));
        w2.push_back(Whole(down));
      } else {
        parts.push_back(RowsOf(gate, a, b, br()));
        parts.push_back(RowsOf(up, a, b, br()));
        if (layout_.w13_up_first) std::swap(parts[0], parts[1]);
        w2.push_back(ColsOf(down, a, b, bc()));
      }
      REFIT_ASSIGN_OR_RETURN(Piece p, ConcatRows(gp + "w13", std::move(parts)));
      w13.push_back(std::move(p));
    }
    const std::string n13 = hf ? gp + "gate_up_proj" : gp + "w13_weight";
    const std::string n2 = hf ? gp + "down_proj" : gp + "w2_weight";
    REFIT_ASSIGN_OR_RETURN(Piece p13, Stack(n13, std::move(w13)));
    REFIT_ASSIGN_OR_RETURN(Piece p2, Stack(n2, std::move(w2)));
    Emit(n13, std::move(p13));
    Emit(n2, std::move(p2));
  }
  return OkStatus();
}

Status Builder::LayerHf(const std::string& prefix,
                        std::set<std::string>& rest) {
  REFIT_RETURN_IF_ERROR(Experts(prefix, rest));
  for (const std::string& n : rest) {
    REFIT_ASSIGN_OR_RETURN(Mat m, Get(prefix + n, !IsRouter(n)));
    Emit(prefix + n, Whole(m));
  }
  return OkStatus();
}

Status Builder::Layer(const std::string& prefix, std::set<std::string>& rest) {
  const int tp = layout_.tp;
  const int r = tp_rank;
  REFIT_RETURN_IF_ERROR(Attention(prefix, rest));
  REFIT_RETURN_IF_ERROR(Experts(prefix, rest));
  // Routers: whole, in the dtype the engine allocates them in.
  for (auto it = rest.begin(); it != rest.end();) {
    if (!IsRouter(*it)) {
      ++it;
      continue;
    }
    REFIT_ASSIGN_OR_RETURN(Mat m, Get(prefix + *it, /*allow_quant=*/false));
    Piece p = Whole(m);
    REFIT_ASSIGN_OR_RETURN(const DType want, RouterDType(*it));
    if (p.dtype != want) {
      std::vector<std::byte> out(p.data.size() / DTypeSize(p.dtype) *
                                 DTypeSize(want));
      REFIT_RETURN_IF_ERROR(quant::CastBuffer(p.data, p.dtype, out, want));
      p.data = std::move(out);
      p.dtype = want;
    }
    Emit(prefix + *it, std::move(p));
    it = rest.erase(it);
  }
  // Merged gate_up_proj (dense MLP, shared experts).
  for (const char* suffix : {".weight", ".bias"}) {
    const std::string gate_tail = std::string("gate_proj") + suffix;
    std::vector<std::string> gates;
    for (const std::string& n : rest) {
      if (EndsWith(n, "." + gate_tail)) gates.push_back(n);
    }
    for (const std::string& gate_name : gates) {
      const std::string base =
          gate_name.substr(0, gate_name.size() - gate_tail.size());
      const std::string up_name = base + "up_proj" + suffix;
      REFIT_ASSIGN_OR_RETURN(Mat gate, Get(prefix + gate_name));
      REFIT_ASSIGN_OR_RETURN(Mat up, Get(prefix + up_name));
      rest.erase(gate_name);
      rest.erase(up_name);
      REFIT_RETURN_IF_ERROR(
          Divides(prefix + gate_name + " rows", gate.rows(), tp));
      if (up.shape != gate.shape) {
        return FailedPrecondition(prefix + up_name + ": shape differs from " +
                                  gate_name);
      }
      const int64_t per = gate.rows() / tp;
      const std::string out = prefix + base + "gate_up_proj" + suffix;
      std::vector<Piece> parts;
      parts.push_back(RowsOf(gate, r * per, (r + 1) * per, br()));
      parts.push_back(RowsOf(up, r * per, (r + 1) * per, br()));
      REFIT_ASSIGN_OR_RETURN(Piece p, ConcatRows(out, std::move(parts)));
      Emit(out, std::move(p));
    }
  }
  // Row-parallel: o_proj, down_proj weights sliced by columns.
  for (auto it = rest.begin(); it != rest.end();) {
    const std::string& n = *it;
    if (n != "self_attn.o_proj.weight" && !EndsWith(n, ".down_proj.weight") &&
        n != "down_proj.weight") {
      ++it;
      continue;
    }
    REFIT_ASSIGN_OR_RETURN(Mat m, Get(prefix + n));
    if (m.shape.size() != 2) {
      return FailedPrecondition(prefix + n + ": not a 2-D weight");
    }
    REFIT_RETURN_IF_ERROR(Divides(prefix + n + " columns", m.cols(), tp));
    const int64_t per = m.cols() / tp;
    Emit(prefix + n, ColsOf(m, r * per, (r + 1) * per, bc()));
    it = rest.erase(it);
  }
  for (const std::string& n : rest) {
    if (n.find(".experts.") != std::string::npos || StartsWith(n, "experts.")) {
      return Unimplemented("checkpoint tensor " + prefix + n +
                           " has no engine rule");
    }
    REFIT_ASSIGN_OR_RETURN(Mat m, Get(prefix + n));
    Emit(prefix + n, Whole(m));
  }
  return OkStatus();
}

Status Builder::MtpLayer(const std::string& prefix,
                         std::set<std::string>& rest) {
  rest.erase("embed_tokens.weight");  // the main model's
  rest.erase("shared_head.head.weight");
  if (family_ == EngineFamily::kHf) return LayerHf(prefix, rest);
  const bool vllm = family_ == EngineFamily::kVllm;
  const std::string own = vllm ? prefix : "model.";
  for (const char* n : {"enorm.weight", "hnorm.weight", "eh_proj.weight",
                        "shared_head.norm.weight"}) {
    if (rest.erase(n) == 0) {
      return FailedPrecondition("checkpoint: missing MTP tensor " + prefix + n);
    }
    REFIT_ASSIGN_OR_RETURN(Mat m, Get(prefix + n));
    Emit(own + n, Whole(m));
  }
  const size_t first = out_.size();
  REFIT_RETURN_IF_ERROR(Layer(prefix, rest));
  const std::string block = vllm ? prefix + "mtp_block." : "model.decoder.";
  for (size_t i = first; i < out_.size(); ++i) {
    out_[i].name = block + out_[i].name.substr(prefix.size());
  }
  return OkStatus();
}

Status Builder::Run() {
  const std::string layers_prefix = "model.layers.";
  std::vector<std::string> global;
  std::map<int64_t, std::set<std::string>> layers;
  REFIT_RETURN_IF_ERROR(Divides("num_hidden_layers", cfg_.layers, layout_.pp));
  const int64_t per_stage = cfg_.layers / layout_.pp;
  for (const std::string& n : ckpt_.Names()) {
    if (!StartsWith(n, layers_prefix)) {
      global.push_back(n);
      continue;
    }
    const std::string_view tail =
        std::string_view(n).substr(layers_prefix.size());
    const size_t dot = tail.find('.');
    const auto l = ParseIndex(tail.substr(0, dot));
    if (dot == std::string_view::npos || !l) {
      global.push_back(n);
      continue;
    }
    if (*l >= cfg_.layers + layout_.mtp_layers) continue;  // not refit
    const bool mtp = *l >= cfg_.layers;
    if ((mtp ? layout_.pp - 1 : *l / per_stage) != pp_rank) continue;
    layers[*l].insert(std::string(tail.substr(dot + 1)));
  }
  REFIT_RETURN_IF_ERROR(Global(global));
  for (auto& [l, rest] : layers) {
    const std::string prefix = layers_prefix + Str(l) + ".";
    if (l >= cfg_.layers) {
      REFIT_RETURN_IF_ERROR(MtpLayer(prefix, rest));
    } else if (family_ == EngineFamily::kHf) {
      REFIT_RETURN_IF_ERROR(LayerHf(prefix, rest));
    } else {
      REFIT_RETURN_IF_ERROR(Layer(prefix, rest));
    }
  }
  return OkStatus();
}

}  // namespace

Result<std::vector<EngineTensor>> BuildEngineReference(
    std::string_view config_json, const io::Checkpoint& ckpt,
    EngineFamily family, const EngineRefLayout& layout, int rank,
    int world_size, const EngineQuant* quant) {
  if (world_size <= 0 || rank < 0 || rank >= world_size) {
    return InvalidArgument("rank " + Str(rank) + " of world size " +
                           Str(world_size));
  }
  if (layout.tp <= 0 || layout.pp <= 0 || layout.ep <= 0 || layout.etp <= 0) {
    return InvalidArgument("layout sizes must be > 0");
  }
  const int64_t w = world_size;
  if (w % (int64_t{layout.tp} * layout.pp) != 0) {
    return InvalidArgument("world size " + Str(w) +
                           " is not divisible by tp * pp = " +
                           Str(int64_t{layout.tp} * layout.pp));
  }
  if (w % (int64_t{layout.etp} * layout.ep * layout.pp) != 0) {
    return InvalidArgument("world size " + Str(w) +
                           " is not divisible by etp * ep * pp = " +
                           Str(int64_t{layout.etp} * layout.ep * layout.pp));
  }
  if (family == EngineFamily::kHf && (layout.tp != 1 || layout.etp != 1)) {
    return InvalidArgument("hf family: tp = " + Str(layout.tp) +
                           ", etp = " + Str(layout.etp) +
                           " (an unsharded export needs tp = etp = 1)");
  }
  REFIT_ASSIGN_OR_RETURN(Config cfg, ParseConfig(config_json, family));
  Builder b(ckpt, family, cfg, layout, quant);
  b.tp_rank = rank % layout.tp;
  b.pp_rank = rank / (world_size / layout.pp);
  b.etp_rank = rank % layout.etp;
  b.ep_rank = (rank / layout.etp) % layout.ep;
  REFIT_RETURN_IF_ERROR(b.Run());
  return b.TakeOutput();
}

}  // namespace refit::verify
