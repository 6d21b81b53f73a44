#include "refit/exec/synthetic.h"

#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

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

DType FileDType(const ParamSpec& p, const std::string& hf_name, DType model) {
  if (hf_name.find("e_score_correction_bias") != std::string::npos) {
    return DType::kF32;
  }
  return p.dtype_fixed ? model : p.dtype;
}

}  // namespace

Status WriteSyntheticCheckpoint(const ModelSpec& spec,
                                std::string_view config_json,
                                const std::string& out_dir, uint64_t seed) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return IoError("cannot create " + out_dir + ": " + ec.message());
  const DType model = spec.params.empty() ? DType::kBF16 : spec.params[0].dtype;
  std::map<std::string, io::TensorToWrite> by_name;  // sorted, deduplicated
  for (const ParamSpec& p : spec.params) {
    for (size_t c = 0; c < p.hf_names.size(); ++c) {
      const std::string& name = p.hf_names[c];
      if (by_name.count(name)) continue;
      std::vector<int64_t> shape = p.shape;
      shape[0] = p.hf_rows[c];
      const uint64_t key = XXH64(name.data(), name.size(), seed);
      by_name[name] = {
          name, FileDType(p, name, model), shape, nullptr,
          [key](std::span<std::byte> out) { FillRandom(key, out); }};
    }
  }
  std::vector<io::TensorToWrite> tensors;
  for (auto& [name, t] : by_name) tensors.push_back(std::move(t));
  const std::string cfg = out_dir + "/config.json";
  std::ofstream(cfg) << config_json;
  if (!std::filesystem::exists(cfg)) return IoError("cannot write " + cfg);
  return io::WriteSafetensors(out_dir + "/model.safetensors", tensors,
                              {{"format", "pt"}});
}

}  // namespace refit::exec
