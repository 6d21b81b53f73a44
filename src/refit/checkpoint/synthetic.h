// Synthetic Hugging Face checkpoints of any supported config, for tests and
// benchmarks: every HF tensor the spec names, filled with seeded
// pseudo-random finite values, or block-FP8 quantised (DeepSeek-V3 / Kimi-K2
// style, layouts.md §4.1).
#ifndef REFIT_CHECKPOINT_SYNTHETIC_H_
#define REFIT_CHECKPOINT_SYNTHETIC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "refit/core/model_spec.h"

namespace refit::exec {

struct SyntheticOptions {
  uint64_t seed = 1;
  /// Store every quantisable linear weight (IsQuantisableWeight: 2-D weights
  /// other than the embedding, output layer, router and norms) as block FP8:
  /// F8_E4M3 `<name>` plus F32 `<name>_scale_inv`, quant::QuantizeBlockFp8 of
  /// finite pseudo-random values in the blocks of spec.fp8_block, which the
  /// config must name (quantization_config.weight_block_size).
  bool fp8_block = false;
  /// Store routed experts stacked as transformers v5 does
  /// ("P.experts.gate_up_proj" [E, 2I, H], "P.experts.down_proj" [E, H, I];
  /// StackedExpertPlaceOf), each slice holding the bytes the per-expert
  /// tensor of the same seed holds. With fp8_block their scales are stacked
  /// alike ("...experts.gate_up_proj_scale_inv" [E, 2 ceil(I/B), ...]).
  bool stacked_experts = false;
};

/// Writes `out_dir`/config.json (the given text) and
/// `out_dir`/model.safetensors holding every HF tensor of `spec` (built from
/// that config) with HF shapes. Tensors take the model dtype;
/// e_score_correction_bias is F32 as in the published checkpoints. Bytes are a
/// deterministic function of (seed, tensor name, byte index), so misplaced
/// bytes are detected; F32 / BF16 / F16 elements are random bit patterns
/// with the exponent's top bit cleared (finite, |x| < 2), so they can be
/// cast and quantised. Tensors are generated while writing; memory stays
/// bounded whatever the model size (one tensor's F32 values for block FP8).
/// Errors: kIoError naming the path; kInvalidArgument for fp8_block without
/// spec.fp8_block.
Status WriteSyntheticCheckpoint(const ModelSpec& spec,
                                std::string_view config_json,
                                const std::string& out_dir,
                                const SyntheticOptions& options);

/// WriteSyntheticCheckpoint with options {seed}.
Status WriteSyntheticCheckpoint(const ModelSpec& spec,
                                std::string_view config_json,
                                const std::string& out_dir, uint64_t seed);

}  // namespace refit::exec

#endif  // REFIT_CHECKPOINT_SYNTHETIC_H_
