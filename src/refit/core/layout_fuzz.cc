// libFuzzer target: a layout string (ParseParallelConfig) and, when it parses,
// Layout::Create for a world size and one of three small models taken from the
// input. Any input may be rejected; an accepted layout is checked for what
// layout.h promises: the canonical string parses back to itself, rank
// coordinates invert, and the pipeline stages cover every layer once.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "refit/core/layout.h"
#include "refit/core/model_spec.h"

namespace {

void Check(bool ok, const std::string& layout, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "layout_fuzz: %s: %s\n", layout.c_str(), what);
  std::abort();
}

// A dense model, a MoE model and a DeepSeek-V3 (MLA, first layer dense).
std::vector<refit::ModelSpec> MakeSpecs() {
  const char* configs[] = {
      R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64,
          "intermediate_size": 96, "num_hidden_layers": 6,
          "num_attention_heads": 8, "num_key_value_heads": 2,
          "head_dim": 8, "vocab_size": 1000})",
      R"({"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 64,
          "intermediate_size": 96, "moe_intermediate_size": 32,
          "num_hidden_layers": 4, "num_attention_heads": 8,
          "num_key_value_heads": 4, "head_dim": 8, "num_experts": 8,
          "vocab_size": 1000})",
      R"({"architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 64,
          "intermediate_size": 96, "moe_intermediate_size": 16,
          "num_hidden_layers": 3, "num_attention_heads": 4,
          "n_routed_experts": 4, "n_shared_experts": 1,
          "first_k_dense_replace": 1, "q_lora_rank": 32,
          "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4,
          "v_head_dim": 8, "vocab_size": 1000})"};
  std::vector<refit::ModelSpec> specs;
  for (const char* config : configs) {
    refit::Result<refit::ModelSpec> spec =
        refit::ModelSpecFromConfigJson(config);
    if (!spec.ok()) {
      std::fprintf(stderr, "layout_fuzz: %s\n",
                   spec.status().ToString().c_str());
      std::abort();
    }
    specs.push_back(std::move(spec).value());
  }
  return specs;
}

// Rank r's coordinates are in range and map back to r, on both grids.
void CheckRank(const refit::Layout& l, int r, const std::string& s) {
  const int tp = l.TpRank(r), cp = l.CpRank(r), dp = l.DpRank(r);
  const int pp = l.PpRank(r), etp = l.EtpRank(r), ep = l.EpRank(r);
  const int edp = l.EdpRank(r);
  Check(tp < l.tp() && cp < l.cp() && dp < l.dp() && pp < l.pp(), s,
        "dense coordinate out of range");
  Check(etp < l.etp() && ep < l.ep() && edp < l.edp(), s,
        "expert coordinate out of range");
  Check(l.DenseRank(tp, cp, dp, pp) == r, s, "DenseRank");
  Check(l.ExpertRank(etp, ep, edp, pp) == r, s, "ExpertRank");
}

// Stages hold consecutive layers, none twice, all of them.
void CheckStages(const refit::Layout& l, int num_layers, const std::string& s) {
  int next = 0;
  for (int stage = 0; stage < l.pp(); ++stage) {
    const int n = l.StageNumLayers(stage);
    Check(n >= 0 && l.StageFirstLayer(stage) == next, s, "stage layers");
    if (n > 0) Check(l.StageOfLayer(next) == stage, s, "StageOfLayer");
    next += n;
  }
  Check(next == num_layers, s, "stages do not cover the layers");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<refit::ModelSpec> specs = MakeSpecs();
  FuzzedDataProvider in(data, size);
  const int world = in.ConsumeIntegralInRange<int>(-1, 1 << 20);
  const refit::ModelSpec& spec =
      specs[in.ConsumeIntegralInRange<size_t>(0, specs.size() - 1)];
  const std::string text = in.ConsumeRemainingBytesAsString();

  refit::Result<refit::ParallelConfig> config =
      refit::ParseParallelConfig(text);
  if (!config.ok()) return 0;
  const std::string canonical = config->ToString();
  refit::Result<refit::ParallelConfig> again =
      refit::ParseParallelConfig(canonical);
  Check(again.ok() && again->ToString() == canonical, canonical,
        "canonical string does not parse back");

  refit::Result<refit::Layout> layout =
      refit::Layout::Create(*config, world, spec);
  if (!layout.ok()) return 0;
  // Ranks at both ends of the world (all of a small one).
  const int edge = std::min(world, 2048);
  for (int r = 0; r < edge; ++r) CheckRank(*layout, r, canonical);
  for (int r = std::max(edge, world - 2048); r < world; ++r) {
    CheckRank(*layout, r, canonical);
  }
  if (layout->pp() <= 4096) CheckStages(*layout, spec.num_layers, canonical);
  return 0;
}
