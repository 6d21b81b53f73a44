#include "refit/checkpoint/synthetic.h"

#include <xxhash.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "refit/checkpoint/stacked_experts.h"
#include "refit/core/format/dst_format.h"
#include "refit/core/quant/block_fp8.h"
#include "refit/io/safetensors.h"

namespace refit::exec {

namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void FillRandom(uint64_t key, std::span<std::byte> out) {
  const size_t words = out.size() / 8;
  for (size_t i = 0; i < words; ++i) {
    const uint64_t v = SplitMix64(key + i);
    std::memcpy(out.data() + 8 * i, &v, 8);
  }
  const uint64_t tail = SplitMix64(key + words);
  std::memcpy(out.data() + 8 * words, &tail, out.size() - 8 * words);
}

// FillRandom, then every F32 / BF16 / F16 element made finite by clearing
// its exponent's top bit (|x| < 2, subnormals and zeros still occur), so the
// weights can be cast and quantised like trained ones. Other dtypes keep
// their random bits.
void FillRandomValues(uint64_t key, DType dtype, std::span<std::byte> out) {
  FillRandom(key, out);
  const size_t es = DTypeSize(dtype);
  if (dtype != DType::kF32 && dtype != DType::kBF16 && dtype != DType::kF16) {
    return;
  }
  // The exponent's top bit is bit 6 of the element's last byte for all
  // three (little-endian: F32 bit 30, BF16 and F16 bit 14).
  for (size_t i = es - 1; i < out.size(); i += es) {
    out[i] &= std::byte{0xBF};
  }
}

DType FileDType(const ParamSpec& p, const std::string& hf_name, DType model) {
  if (hf_name.find("e_score_correction_bias") != std::string::npos) {
    return DType::kF32;
  }
  return p.dtype_fixed ? model : p.dtype;
}

// Finite pseudo-random F32 values of an [n, k] tensor: uniform in (-1, 1)
// times a power of two in [2^-6, 2^2] per block, so block scales differ.
std::vector<float> RandomValues(uint64_t key, int64_t n, int64_t k,
                                quant::BlockShape block) {
  std::vector<float> v(n * k);
  const int64_t bcols = (k + block.cols - 1) / block.cols;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const uint64_t b = (r / block.rows) * bcols + c / block.cols;
      const int e = static_cast<int>(SplitMix64(key ^ (b * 0x51ed27u)) % 9) - 6;
      const uint64_t u = SplitMix64(key + r * k + c) >> 40;  // 24 bits
      const float x = (static_cast<float>(u) - 8388607.5f) / 8388608.0f;
      v[r * k + c] = std::ldexp(x, e);
    }
  }
  return v;
}

// The block-FP8 data and scales of one synthetic tensor; the data's fill
// keeps the scales for the scale's fill (recomputed if it runs first).
struct SyntheticFp8 {
  uint64_t key;
  int64_t n, k;
  quant::BlockShape block;
  std::vector<std::byte> scales;

  void Quantise(std::span<std::byte> data, std::span<std::byte> scale) const {
    const std::vector<float> v = RandomValues(key, n, k, block);
    quant::BlockFp8Options o;
    o.block = block;
    const Status st =
        quant::QuantizeBlockFp8(std::as_bytes(std::span<const float>(v)),
                                DType::kF32, n, k, o, data, scale);
    if (!st.ok()) std::abort();  // finite values of the right sizes
  }
};

void AddFp8Tensor(const std::string& name, const std::vector<int64_t>& shape,
                  uint64_t key, quant::BlockShape block,
                  std::map<std::string, io::TensorToWrite>& by_name) {
  const quant::GridShape grid = quant::BlockGrid(shape[0], shape[1], block);
  auto src = std::make_shared<SyntheticFp8>(
      SyntheticFp8{key, shape[0], shape[1], block, {}});
  by_name[name] = {name, DType::kF8E4M3, shape, nullptr,
                   [src, grid](std::span<std::byte> out) {
                     src->scales.resize(grid.count() * 4);
                     src->Quantise(out, src->scales);
                   }};
  const std::string scale_name = name + "_scale_inv";
  by_name[scale_name] = {scale_name,
                         DType::kF32,
                         {grid.rows, grid.cols},
                         nullptr,
                         [src](std::span<std::byte> out) {
                           if (src->scales.size() == out.size()) {
                             std::memcpy(out.data(), src->scales.data(),
                                         out.size());
                             src->scales = {};
                             return;
                           }
                           std::vector<std::byte> data(src->n * src->k);
                           src->Quantise(data, out);
                         }};
}

// Replaces the per-expert tensors of `by_name` by their stacks
// (StackedExpertPlaceOf), block-FP8 scales too ("<stack>_scale_inv", gate
// blocks then up blocks): each stack's fill runs its members' fills on their
// slices, so it holds the bytes they would.
void StackExperts(const ModelSpec& spec,
                  std::map<std::string, io::TensorToWrite>& by_name) {
  struct Part {
    int64_t slot = 0;  // slice index: expert * halves + half
    std::function<void(std::span<std::byte>)> fill;
  };
  std::map<std::string, std::pair<io::TensorToWrite, std::vector<Part>>> stacks;
  constexpr std::string_view kScale = "_scale_inv";
  for (auto it = by_name.begin(); it != by_name.end();) {
    const bool scale = it->first.ends_with(kScale);
    std::optional<StackedExpertPlace> at = StackedExpertPlaceOf(
        scale ? it->first.substr(0, it->first.size() - kScale.size())
              : it->first);
    if (!at || it->second.shape.size() != 2) {
      ++it;
      continue;
    }
    if (scale) at->stacked += kScale;
    auto& [stack, parts] = stacks[at->stacked];
    const std::vector<int64_t>& shape = it->second.shape;
    stack = {at->stacked,
             it->second.dtype,
             {spec.num_experts, at->halves * shape[0], shape[1]},
             nullptr,
             {}};
    parts.push_back({at->expert * at->halves + at->half, it->second.fill});
    it = by_name.erase(it);
  }
  for (auto& [name, entry] : stacks) {
    auto& [stack, parts] = entry;
    const size_t slices =
        static_cast<size_t>(stack.shape[0]) *
        (name.find("gate_up_proj") != std::string::npos ? 2 : 1);
    stack.fill = [parts = std::move(parts), slices](std::span<std::byte> out) {
      const size_t slice = out.size() / slices;
      for (const Part& p : parts) p.fill(out.subspan(p.slot * slice, slice));
    };
    by_name[name] = std::move(stack);
  }
}

}  // namespace

Status WriteSyntheticCheckpoint(const ModelSpec& spec,
                                std::string_view config_json,
                                const std::string& out_dir,
                                const SyntheticOptions& options) {
  if (options.fp8_block && !spec.fp8_block) {
    return InvalidArgument(
        "synthetic block-FP8 checkpoint: the config names no "
        "quantization_config.weight_block_size");
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return IoError("cannot create " + out_dir + ": " + ec.message());
  const DType model = spec.params.empty() ? DType::kBF16 : spec.params[0].dtype;
  quant::BlockShape block;
  if (spec.fp8_block) block = {spec.fp8_block->first, spec.fp8_block->second};
  std::map<std::string, io::TensorToWrite> by_name;  // sorted, deduplicated
  for (const ParamSpec& p : spec.params) {
    const bool fp8 = options.fp8_block && IsQuantisableWeight(p);
    for (size_t c = 0; c < p.hf_names.size(); ++c) {
      const std::string& name = p.hf_names[c];
      if (by_name.count(name)) continue;
      std::vector<int64_t> shape = p.shape;
      shape[0] = p.hf_rows[c];
      const uint64_t key = XXH64(name.data(), name.size(), options.seed);
      if (fp8) {
        AddFp8Tensor(name, shape, key, block, by_name);
        continue;
      }
      const DType dtype = FileDType(p, name, model);
      by_name[name] = {name, dtype, shape, nullptr,
                       [key, dtype](std::span<std::byte> out) {
                         FillRandomValues(key, dtype, out);
                       }};
    }
  }
  if (options.stacked_experts) StackExperts(spec, by_name);
  std::vector<io::TensorToWrite> tensors;
  for (auto& [name, t] : by_name) tensors.push_back(std::move(t));
  const std::string cfg = out_dir + "/config.json";
  std::ofstream(cfg) << config_json;
  if (!std::filesystem::exists(cfg)) return IoError("cannot write " + cfg);
  return io::WriteSafetensors(out_dir + "/model.safetensors", tensors,
                              {{"format", "pt"}});
}

Status WriteSyntheticCheckpoint(const ModelSpec& spec,
                                std::string_view config_json,
                                const std::string& out_dir, uint64_t seed) {
  SyntheticOptions options;
  options.seed = seed;
  return WriteSyntheticCheckpoint(spec, config_json, out_dir, options);
}

}  // namespace refit::exec
