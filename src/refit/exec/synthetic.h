// Synthetic Hugging Face checkpoints of any supported config, for tests and
// benchmarks: every HF tensor the spec names, filled with seeded
// pseudo-random bytes.
#ifndef REFIT_EXEC_SYNTHETIC_H_
#define REFIT_EXEC_SYNTHETIC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "refit/core/model_spec.h"

namespace refit::exec {

/// Writes `out_dir`/config.json (the given text) and
/// `out_dir`/model.safetensors holding every HF tensor of `spec` (built from
/// that config) with HF shapes. Tensors take the model dtype;
/// e_score_correction_bias is F32 as in the published checkpoints. Bytes are a
/// deterministic function of (seed, tensor name, byte index), so misplaced
/// bytes are detected. Tensors are generated while writing; memory stays
/// bounded whatever the model size. Errors: kIoError naming the path.
Status WriteSyntheticCheckpoint(const ModelSpec& spec,
                                std::string_view config_json,
                                const std::string& out_dir, uint64_t seed);

}  // namespace refit::exec

#endif  // REFIT_EXEC_SYNTHETIC_H_
