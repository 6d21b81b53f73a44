// Hugging Face v5 / Megatron-Bridge stacked expert tensors read as the
// per-expert tensors the spec names. transformers v5 holds a MoE layer's
// routed experts as two 3-D tensors (modeling_qwen3_moe.py Qwen3MoeExperts,
// likewise Mixtral, OLMoE, DeepSeek): "P.experts.gate_up_proj" [E, 2I, H],
// slice e = [gate_proj rows; up_proj rows] of expert e (its forward chunks
// the product in two, gate first), and "P.experts.down_proj" [E, H, I],
// slice e = expert e's down_proj. Each per-expert tensor is then a contiguous
// part of a stacked one, so it is read in place (no copy).
#ifndef REFIT_CHECKPOINT_STACKED_EXPERTS_H_
#define REFIT_CHECKPOINT_STACKED_EXPERTS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "refit/core/status.h"
#include "refit/io/safetensors.h"

namespace refit::exec {

/// Where a per-expert HF tensor lies in its stacked tensor: slice
/// `expert * halves + half` of [rows, cols] elements of `stacked`.
struct StackedExpertPlace {
  std::string stacked;  ///< "P.experts.gate_up_proj" or "P.experts.down_proj"
  int64_t expert = 0;
  int64_t half = 0;    ///< 0: gate (or down), 1: up
  int64_t halves = 1;  ///< 2 for gate_up_proj
};

/// The place of "P.experts.<e>.{gate,up,down}_proj.weight" (or Mixtral's
/// w1 / w3 / w2), or nullopt for any other name.
std::optional<StackedExpertPlace> StackedExpertPlaceOf(const std::string& name);

class StackedExperts {
 public:
  /// The per-expert HF tensor `name` ("P.experts.<e>.gate_proj.weight",
  /// "up_proj", "down_proj", or Mixtral's "w1" / "w3" / "w2") of shape
  /// `shape` [rows, cols], read from its stacked tensor in `ckpt`
  /// ("P.experts.gate_up_proj" [num_experts, 2 * rows, cols]: gate then up;
  /// "P.experts.down_proj" [num_experts, rows, cols]). nullptr when `name`
  /// is not a routed expert's tensor or `ckpt` holds no such stack. The
  /// reference stays valid while this object (or a copy) lives.
  /// With `suffix` (e.g. "_scale_inv"), the tensor `name` + suffix of
  /// shape `shape` read from the stack named stacked + suffix, sliced alike:
  /// transformers v5's block-FP8 experts keep the scales of gate_up_proj
  /// [E, 2I, H] as gate_up_proj_scale_inv [E, 2I/B, H/B], gate blocks then
  /// up blocks (so I must be a multiple of the block rows B; otherwise the
  /// stack's shape differs from [E, 2 ceil(I/B), ceil(H/B)] and is named).
  /// Errors: kFailedPrecondition naming the stacked tensor and both shapes
  /// when its shape does not match the config.
  Result<const io::TensorRef*> Find(const io::Checkpoint& ckpt,
                                    const std::string& name,
                                    const std::vector<int64_t>& shape,
                                    int num_experts, const std::string& where,
                                    const std::string& suffix = "");

  /// True when some tensor was read from stacked tensor `name`.
  bool Uses(const std::string& name) const { return used_.contains(name); }

 private:
  struct Slice {
    io::TensorInfo info;
    io::TensorRef ref;
  };
  std::vector<std::shared_ptr<const Slice>> slices_;
  std::unordered_set<std::string> used_;
};

}  // namespace refit::exec

#endif  // REFIT_CHECKPOINT_STACKED_EXPERTS_H_
