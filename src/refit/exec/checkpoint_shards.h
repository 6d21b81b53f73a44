// Building shards from a Hugging Face checkpoint, and checking them.
//
// A shard's bytes are read straight from the checkpoint's HF tensors through
// the spec's row mapping (QKV interleave, [gate; up] concatenation), so the
// "expected" destination is computed independently of the planner.
#ifndef REFIT_EXEC_CHECKPOINT_SHARDS_H_
#define REFIT_EXEC_CHECKPOINT_SHARDS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "refit/core/model_spec.h"
#include "refit/core/shard.h"
#include "refit/exec/shard_arena.h"
#include "refit/io/safetensors.h"

namespace refit::exec {

/// For every parameter, its HF tensors in hf_names order.
struct BoundCheckpoint {
  std::vector<std::vector<const io::TensorRef*>> sources;
  std::vector<std::string> skipped;  ///< HF tensors of MTP layers, not refit
};

/// Checks the checkpoint against the spec and binds every parameter to its
/// HF tensors. Adopts the checkpoint dtype when the config names none.
/// A tensor's dtype must equal the parameter's, except that parameters whose
/// dtype Megatron fixes to fp32 (router.weight, router.expert_bias) accept
/// BF16/F16 (widened exactly). Tensors of layers >=
/// num_layers (MTP), a tied model's stored lm_head and RoPE inv_freq buffers
/// are skipped and listed.
/// Errors: kFailedPrecondition naming the tensor: missing, wrong shape, wrong
/// dtype, or a tensor the model does not have (the checkpoint path is named);
/// kUnimplemented for Mllama vision-tower tensors.
Result<BoundCheckpoint> BindCheckpoint(ModelSpec& spec,
                                       const io::Checkpoint& ckpt);

/// Writes the shard `g` of parameter `p` (from its HF tensors `hf`) into
/// `out`, which holds the whole local shard. Bytes outside the segments
/// (vocabulary padding) are left as they are.
void FillShard(const ParamSpec& p, const std::vector<const io::TensorRef*>& hf,
               const ShardGeometry& g, std::byte* out);

/// True when the segments of `actual` equal what FillShard would write.
/// `scratch` is reused between calls.
bool ShardMatches(const ParamSpec& p,
                  const std::vector<const io::TensorRef*>& hf,
                  const ShardGeometry& g, const std::byte* actual,
                  std::vector<std::byte>& scratch);

/// FillShard of every shard of `arena`.
void FillArena(const ModelSpec& spec, const BoundCheckpoint& ckpt,
               const ShardArena& arena);

/// Sets wrong[p] for every shard p of `arena` that is not ShardMatches
/// (`wrong` is indexed by parameter; other entries are left as they are).
void MarkWrongShards(const ModelSpec& spec, const BoundCheckpoint& ckpt,
                     const ShardArena& arena, std::vector<bool>& wrong);

}  // namespace refit::exec

#endif  // REFIT_EXEC_CHECKPOINT_SHARDS_H_
