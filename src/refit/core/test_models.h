// Small model configs shared by the core tests.
#ifndef REFIT_CORE_TEST_MODELS_H_
#define REFIT_CORE_TEST_MODELS_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "refit/core/model_spec.h"
#include "refit/core/planner.h"

namespace refit::testing {

/// A Qwen3-MoE config: hidden 64, 8 heads / 4 KV heads of 8, `layers`
/// layers, `experts` experts of width 32 (0: a dense Qwen3), vocab 1000.
inline std::string Qwen3Config(int layers, int experts,
                               const char* dtype = "float32",
                               bool tied = false) {
  const std::string arch =
      experts > 0 ? "Qwen3MoeForCausalLM" : "Qwen3ForCausalLM";
  return R"({"architectures": [")" + arch + R"("], "model_type": "qwen3",
    "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32,
    "num_hidden_layers": )" +
         std::to_string(layers) + R"(,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 8,
    "num_experts": )" +
         std::to_string(experts) + R"(, "num_experts_per_tok": 2,
    "vocab_size": 1000, "tie_word_embeddings": )" +
         (tied ? "true" : "false") + R"(, "torch_dtype": ")" + dtype + R"("})";
}

inline ModelSpec MustSpec(const std::string& config) {
  Result<ModelSpec> spec = ModelSpecFromConfigJson(config);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  return std::move(spec).value();
}

/// The parameter of `spec` named `name` (its index in *index); a test
/// failure and the first parameter when there is none.
inline const ParamSpec& FindParam(const ModelSpec& spec,
                                  const std::string& name,
                                  size_t* index = nullptr) {
  for (size_t i = 0; i < spec.params.size(); ++i) {
    if (spec.params[i].name == name) {
      if (index) *index = i;
      return spec.params[i];
    }
  }
  ADD_FAILURE() << "no parameter " << name;
  return spec.params[0];
}

/// A topology of two layouts: collocated (both on ranks [0, sw)) or not
/// (source ranks [0, sw), destination ranks [sw, sw + dw)).
inline RefitTopology MustTopology(const ModelSpec& spec, const char* src,
                                  int sw, const char* dst, int dw,
                                  bool collocated) {
  Result<Layout> s = Layout::Create(*ParseParallelConfig(src), sw, spec);
  Result<Layout> d = Layout::Create(*ParseParallelConfig(dst), dw, spec);
  EXPECT_TRUE(s.ok() && d.ok()) << src << " -> " << dst;
  Result<RefitTopology> t = collocated ? MakeTopology(*s, *d, 0, 0, sw)
                                       : MakeTopology(*s, *d, 0, sw, sw + dw);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return *t;
}

// A random EPLB-style placement of `experts` over `ep` ranks: every expert at
// least once, some on several ranks (redundant slots), none twice on a rank,
// slots in random order.
inline std::vector<int> RandomPlacement(std::mt19937& rng, int experts,
                                        int ep) {
  const int per_rank = (experts + ep - 1) / ep + static_cast<int>(rng() % 2);
  if (per_rank > experts) return {};
  std::vector<int> perm(experts);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<std::vector<int>> ranks(ep);
  for (int i = 0; i < experts; ++i) ranks[i % ep].push_back(perm[i]);
  std::vector<int> out;
  for (std::vector<int>& r : ranks) {
    while (static_cast<int>(r.size()) < per_rank) {
      const int e = static_cast<int>(rng() % experts);
      if (std::find(r.begin(), r.end(), e) == r.end()) r.push_back(e);
    }
    std::shuffle(r.begin(), r.end(), rng);
    out.insert(out.end(), r.begin(), r.end());
  }
  return out;
}

}  // namespace refit::testing

#endif  // REFIT_CORE_TEST_MODELS_H_
