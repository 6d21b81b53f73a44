// Scaled-down copies of a Hugging Face config, for running full-scale
// scenarios at reduced size (`refit bench --scale K`).
#ifndef REFIT_BENCH_SCALED_CONFIG_H_
#define REFIT_BENCH_SCALED_CONFIG_H_

#include <string>
#include <string_view>

#include "refit/core/status.h"

namespace refit {

/// Divides the config's widths by (up to) `k`, keeping layer, head and expert
/// counts. Each width d becomes d / f, f the largest divisor of k that
/// divides d and leaves d / f a multiple of the width's granule:
///  - hidden_size, vocab_size, q_lora_rank, kv_lora_rank and the per-head
///    dims (head_dim, qk_nope_head_dim, qk_rope_head_dim, v_head_dim):
///    granule 1 (head counts carry the TP divisibility; vocab is padded);
///  - intermediate_size, moe_intermediate_size and the shared-expert widths:
///    granule `split_multiple` (pass the lcm of every TP and ETP size the
///    run uses, so every layout that divided before still divides).
/// A config without head_dim gets the head_dim it implied (hidden_size /
/// num_attention_heads) before scaling. A nested "text_config" is scaled
/// in place.
/// Errors: kInvalidArgument for k < 1, split_multiple < 1 or bad JSON.
Result<std::string> ScaleConfigJson(std::string_view config_json, int k,
                                    int split_multiple);

}  // namespace refit

#endif  // REFIT_BENCH_SCALED_CONFIG_H_
