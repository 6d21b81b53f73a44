#include "refit/bench/scaled_config.h"

#include <nlohmann/json.hpp>

namespace refit {

namespace {

int64_t Scale(int64_t d, int k, int64_t granule) {
  for (int f = k; f > 1; --f) {
    if (k % f == 0 && d % f == 0 && (d / f) % granule == 0) return d / f;
  }
  return d;
}

void ScaleField(nlohmann::json& cfg, const char* key, int k, int64_t granule) {
  auto it = cfg.find(key);
  if (it == cfg.end() || !it->is_number_integer()) return;
  *it = Scale(it->get<int64_t>(), k, granule);
}

}  // namespace

Result<std::string> ScaleConfigJson(std::string_view config_json, int k,
                                    int split_multiple) {
  if (k < 1 || split_multiple < 1) {
    return InvalidArgument("scale: k and split_multiple must be >= 1");
  }
  nlohmann::json root = nlohmann::json::parse(config_json, nullptr, false);
  if (root.is_discarded() || !root.is_object()) {
    return InvalidArgument("scale: config.json is not a JSON object");
  }
  nlohmann::json& cfg =
      root.contains("text_config") ? root["text_config"] : root;
  const bool mla = cfg.contains("kv_lora_rank");
  if (!mla && !cfg.contains("head_dim") && cfg.contains("hidden_size") &&
      cfg.contains("num_attention_heads")) {
    cfg["head_dim"] = cfg["hidden_size"].get<int64_t>() /
                      cfg["num_attention_heads"].get<int64_t>();
  }
  for (const char* key :
       {"hidden_size", "vocab_size", "q_lora_rank", "kv_lora_rank", "head_dim",
        "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"}) {
    ScaleField(cfg, key, k, 1);
  }
  for (const char* key :
       {"intermediate_size", "moe_intermediate_size",
        "shared_expert_intermediate_size", "shared_intermediate_size"}) {
    ScaleField(cfg, key, k, split_multiple);
  }
  return root.dump(2) + "\n";
}

}  // namespace refit
