// An independent test reference for refits into inference engines: the
// per-rank tensors an inference engine (vLLM, SGLang) or an unsharded Hugging
// Face export holds after loading a model, built straight from the Hugging
// Face checkpoint by the engine's documented loading rules (vLLM
// model_executor/layers/linear.py QKVParallelLinear /
// MergedColumnParallelLinear / RowParallelLinear weight_loader,
// vocab_parallel_embedding.py, fused_moe/layer.py _load_w13 / _load_w2,
// models/deepseek_v2.py).
//
// Deliberately shares no code with the planner: no shard geometry, layouts,
// model specs or executors. Everything is derived from the config.json text
// and the checkpoint's tensors by HF name, so a planner bug cannot hide in
// both. Slow and simple: every tensor is copied (and, for block FP8,
// quantised whole) on every call; meant for tiny and scaled-down models.
#ifndef REFIT_VERIFY_ENGINE_REFERENCE_H_
#define REFIT_VERIFY_ENGINE_REFERENCE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "refit/core/dtype.h"
#include "refit/core/status.h"
#include "refit/io/safetensors.h"

namespace refit::verify {

/// Whose loading rules the reference follows.
enum class EngineFamily {
  kVllm,    ///< vLLM: fused qkv_proj / gate_up_proj, FusedMoE w13 / w2,
            ///< vocab padded to a multiple of 64, MLA fused_qkv_a_proj.
  kSglang,  ///< SGLang: as vLLM, but MLA's fused q_a / kv_a tensor is
            ///< `fused_qkv_a_proj_with_mqa`.
  kHf,      ///< Unsharded Hugging Face export: every tensor whole under its
            ///< HF name; pipeline and expert parallel only (tp = etp = 1).
};

/// The engine's parallel layout. World = tp * pp * dp; ranks in Megatron
/// order: tp_rank = rank % tp, pp_rank = rank / (world / pp),
/// etp_rank = rank % etp, ep_rank = (rank / etp) % ep. Requires tp * pp and
/// etp * ep * pp to divide the world size.
struct EngineRefLayout {
  int tp = 1;
  int pp = 1;
  int ep = 1;
  int etp = 1;
  /// vLLM's EPLB physical_to_logical_map: EP rank e's slot j holds logical
  /// expert expert_placement[e * (size / ep) + j]. Empty: the linear
  /// placement (EP rank e holds [e * E / ep, (e + 1) * E / ep)).
  std::vector<int> expert_placement;
  /// Multi-token prediction layers to include (HF model.layers.(L + k),
  /// k < mtp_layers, on the last stage): vLLM's DeepSeekMTP names
  /// model.layers.N.{enorm, hnorm, eh_proj, shared_head.norm} and
  /// model.layers.N.mtp_block.<layer> (deepseek_mtp.py
  /// _rewrite_spec_layer_name), SGLang's model.{enorm, ...} and
  /// model.decoder.<layer> (deepseek_nextn.py); eh_proj whole (nn.Linear);
  /// embed_tokens and shared_head.head are the main model's and skipped.
  int mtp_layers = 0;
  /// Each routed expert's w13 as [up rows; gate rows] (and its scale rows
  /// likewise): FusedMoE with load_up_proj_weight_first (fused_moe/
  /// layer.py _load_w13).
  bool w13_up_first = false;
};

/// One tensor a rank holds: row-major, densely packed little-endian bytes.
struct EngineTensor {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype = DType::kU8;
  std::vector<std::byte> data;
};

/// Optional quantised destination: block FP8 (DeepSeek-V3 style, layouts.md
/// §4.1; `NAME_scale_inv`, F32 per block) or MXFP8 (OCP MX v1.0, §4.2;
/// `NAME_scale`, one E8M0 byte per 1 x 32 along K).
struct EngineQuant {
  int64_t block_rows = 128;  ///< block FP8 only
  int64_t block_cols = 128;  ///< block FP8 only
  /// MXFP8: each weight quantised whole (quant::QuantizeMxfp8) before any
  /// slicing, which equals quantising each rank's tensor when TP cuts K at
  /// 32-element boundaries; every engine tensor's scales [rows, K / 32]
  /// (stacked: per expert), or with `swizzled` each expert's (or the
  /// tensor's) [rows, K / 32] in the 128x4 layout (quant::Swizzle128x4), 1-D
  /// (stacked: [E, bytes]).
  bool mxfp8 = false;
  bool swizzled = false;
  /// Which HF weights (by HF name; for stacked experts the stacked name,
  /// e.g. "model.layers.0.mlp.experts.gate_up_proj") become F8_E4M3. Each is
  /// quantised whole (refit::quant::QuantizeBlockFp8, F32 scales) before any
  /// slicing; routers are never quantised. Null or empty: none.
  std::function<bool(std::string_view hf_name)> quantised;
};

/// The tensors rank `rank` of `world_size` holds after `family` loads the
/// checkpoint `ckpt` described by `config_json` (the config.json text) under
/// `layout`, sorted by name. Names keep the HF layer index (global); layers
/// at or past num_hidden_layers (MTP) are skipped.
///
/// vLLM / SGLang rules (r = tp_rank), for config model_type llama, mistral,
/// qwen2, qwen3, qwen2_moe, qwen3_moe, mixtral, olmoe, deepseek_v2,
/// deepseek_v3, kimi_k2, glm4_moe (GLM-4.x MoE: biased QKV and per-head
/// q_norm / k_norm held whole, vLLM glm4_moe.py) and minimax_m2; others
/// are kUnimplemented:
///  - model.embed_tokens.weight (pp stage 0), lm_head.weight (last stage;
///    absent when tie_word_embeddings and pp == 1, the embedding's data when
///    tied and pp > 1): vocab padded up to a multiple of 64 (V_pad), rank r
///    holds rows [r * V_pad / tp, +V_pad / tp), padding rows zero.
///  - self_attn.qkv_proj.{weight,bias}: [q rows of heads r*nh/tp ..;
///    k rows of its kv heads; v rows of its kv heads]; kv heads
///    r*kv/tp .. when tp <= kv, else the one head r / (tp / kv).
///  - <prefix>.gate_up_proj.weight from <prefix>.gate_proj / up_proj
///    (dense MLP, shared experts): [gate rows r*I/tp ..; up rows the same].
///  - o_proj / down_proj weights: columns [r*K/tp, +K/tp) (their biases
///    whole).
///  - MLA: q_proj (q_lora_rank null), q_b_proj, kv_b_proj: rows
///    [r*R/tp, +R/tp); with q_lora_rank set, q_a_proj and kv_a_proj_with_mqa
///    become one whole `fused_qkv_a_proj` (vLLM) /
///    `fused_qkv_a_proj_with_mqa` (SGLang) weight; otherwise
///    kv_a_proj_with_mqa whole.
///  - routers (mlp.gate.weight, mlp.gate.e_score_correction_bias, Mixtral
///    block_sparse_moe.gate.weight): whole; e_score_correction_bias in F32;
///    gate weights in F32 for minimax_m2 (both engines) and glm4_moe (vLLM),
///    otherwise in the checkpoint's embedding dtype (the model dtype the
///    engines allocate them in).
///  - routed experts: <prefix>.experts.w13_weight [E_local, 2*I/etp, H] and
///    w2_weight [E_local, H, I/etp] of the global experts
///    [ep_rank*E_local, +E_local), from per-expert gate_proj / up_proj /
///    down_proj (Mixtral w1 / w3 / w2) or stacked (transformers v5)
///    experts.gate_up_proj [E, 2I, H] / experts.down_proj [E, H, I].
///  - MiniMax-M2's full-width self_attn.q_norm / k_norm: rank r's
///    [r * W / tp, +W / tp) (vLLM minimax_m2.py MiniMaxText01RMSNormTP);
///    OLMoE's stay whole (olmoe.py gathers q and k before the norm).
///  - everything else: whole, as stored (model.norm.weight on the last
///    stage; other tensors outside model.layers on stage 0).
///  - an FP8-stored checkpoint tensor is an error (kUnimplemented).
/// HF rules: every tensor whole under its HF name, held by the pp stage
/// (and, for experts, the EP rank) that owns it; stacked experts are cut to
/// the EP rank's experts; tied embeddings: no lm_head when pp == 1.
/// Block FP8: a quantised weight's engine tensor is built from its FP8 bytes
/// by the rules above; `<engine name>_scale_inv` (F32) holds, for each part
/// taken (in the data's order, concatenated along dim 0), the scale rows
/// (row slice [a, b): blocks a / Br .. ceil(b / Br) - 1) or scale columns
/// (column slice) of every block the part touches, the other dim whole.
///
/// Errors (one line naming the tensor or field): kInvalidArgument (bad rank,
/// layout or config field; a size the layout does not divide; tp or etp > 1
/// for kHf), kUnimplemented (an architecture the engine rules do not cover; a
/// quantised vocab or 1-D tensor), kNotFound (a tensor a rule needs),
/// kFailedPrecondition (tensors that do not fit together), and the
/// quantiser's errors.
Result<std::vector<EngineTensor>> BuildEngineReference(
    std::string_view config_json, const io::Checkpoint& ckpt,
    EngineFamily family, const EngineRefLayout& layout, int rank,
    int world_size, const EngineQuant* quant = nullptr);

}  // namespace refit::verify

#endif  // REFIT_VERIFY_ENGINE_REFERENCE_H_
