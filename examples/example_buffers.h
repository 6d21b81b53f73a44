// Buffers of the examples: one rank's tensors of one layout, owned by the
// program as a trainer or an inference engine owns its weights.
#ifndef REFIT_EXAMPLES_EXAMPLE_BUFFERS_H_
#define REFIT_EXAMPLES_EXAMPLE_BUFFERS_H_

#include <refit/refit.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

// A small Qwen3-MoE (2 layers, 8 experts) in float32.
inline constexpr char kExampleConfig[] = R"({
  "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
  "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32,
  "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4,
  "head_dim": 8, "num_experts": 8, "num_experts_per_tok": 2,
  "vocab_size": 1000, "tie_word_embeddings": false, "torch_dtype": "float32"})";

// One rank's tensors of one layout, in buffers this program owns.
struct Buffers {
  std::vector<std::vector<float>> data;
  refit::ShardedModel model;
};

inline Buffers Allocate(std::shared_ptr<const refit::ModelSpec> spec,
                        const char* layout, int rank, int world) {
  Buffers b;
  b.model.spec = spec;
  b.model.layout = *refit::ParseParallelConfig(layout);
  b.model.rank = rank;
  b.model.world_size = world;
  auto shapes = refit::ShardShapes(*spec, b.model.layout, rank, world);
  if (!shapes.ok()) std::abort();
  b.data.reserve(shapes->size());
  for (const refit::ShardShape& s : *shapes) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    b.data.emplace_back(n, 0.0f);
    b.model.tensors[s.name] = {b.data.back().data(), s.dtype, s.shape};
  }
  return b;
}

// Rows of vocabulary padding in a tensor: Megatron pads the vocabulary to a
// multiple of 128 x TP and keeps the padding rows zero; refit does not move
// them. Returns the first padding row of this rank's shard (its row count
// when it has none).
inline int64_t FirstPaddingRow(const std::string& name,
                               const refit::TensorView& view,
                               const refit::ShardedModel& m) {
  if (name != "embedding.word_embeddings.weight" &&
      name != "output_layer.weight") {
    return view.shape.empty() ? 0 : view.shape[0];
  }
  const int64_t rows = view.shape[0];
  const int64_t first = (m.rank % m.layout.tp) * rows;  // global row
  const int64_t real = m.spec->vocab_size - first;
  return real < 0 ? 0 : (real < rows ? real : rows);
}

// Initial weights: a function of the tensor name and element index, so that
// data-parallel replicas hold the same values, as a trainer's do.
inline void Initialise(Buffers& b) {
  for (auto& [name, view] : b.model.tensors) {
    float* w = static_cast<float*>(view.data);
    const size_t h = std::hash<std::string>{}(name);
    const int64_t row = view.shape.empty() ? 1 : view.numel() / view.shape[0];
    const int64_t n = view.shape.empty()
                          ? view.numel()
                          : FirstPaddingRow(name, view, b.model) * row;
    for (int64_t i = 0; i < n; ++i) {
      w[i] = static_cast<float>((h + 31 * i) % 1000) / 1000.0f - 0.5f;
    }
  }
}

// "Optimizer step": every weight moves by lr * its (fake) gradient.
inline void Step(Buffers& b, float lr) {
  for (auto& [name, view] : b.model.tensors) {
    float* w = static_cast<float*>(view.data);
    const int64_t row = view.shape.empty() ? 1 : view.numel() / view.shape[0];
    const int64_t n = view.shape.empty()
                          ? view.numel()
                          : FirstPaddingRow(name, view, b.model) * row;
    for (int64_t i = 0; i < n; ++i) w[i] -= lr * (w[i] + 0.25f);
  }
}

inline bool SameBytes(const Buffers& a, const Buffers& b) {
  for (size_t i = 0; i < a.data.size(); ++i) {
    if (std::memcmp(a.data[i].data(), b.data[i].data(),
                    a.data[i].size() * sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

#endif  // REFIT_EXAMPLES_EXAMPLE_BUFFERS_H_
