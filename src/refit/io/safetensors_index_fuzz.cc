// libFuzzer target: the text of a model.safetensors.index.json, read by
// ParseSafetensorsIndex. Any input may be rejected; every shard an accepted
// index names must resolve inside the checkpoint directory (no path
// traversal), which this target checks.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "refit/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto shards = refit::io::ParseSafetensorsIndex(
      "/ckpt/model.safetensors.index.json", text);
  if (!shards.ok()) return 0;
  for (const auto& [name, shard] : *shards) {
    const std::string resolved =
        (std::filesystem::path("/ckpt") / shard).lexically_normal().string();
    if (resolved.rfind("/ckpt/", 0) != 0) {
      std::fprintf(stderr, "safetensors_index_fuzz: shard '%s' -> '%s'\n",
                   shard.c_str(), resolved.c_str());
      std::abort();
    }
  }
  return 0;
}
