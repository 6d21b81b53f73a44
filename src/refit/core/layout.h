// Megatron parallel layouts: sizes, rank coordinates and pipeline stages.
//
// Rank order is Megatron's default "tp-cp-ep-dp-pp" (parallel_state.py
// initialize_model_parallel, RankGenerator; layouts.md §1.8), fastest-varying
// first. Two grids share one world: the dense grid (tp, cp, dp, pp) and the
// expert grid (etp, ep, edp, pp); both have the same pipeline groups.
#ifndef REFIT_CORE_LAYOUT_H_
#define REFIT_CORE_LAYOUT_H_

#include <string>
#include <string_view>
#include <vector>

#include "refit/core/model_spec.h"
#include "refit/core/status.h"

namespace refit {

/// Whose per-rank tensors a layout describes (docs/LAYOUTS.md §2).
///  - kMegatron: Megatron-core's (the default; layouts.md §1).
///  - kVllm, kSglang: the tensors vLLM / SGLang hold after loading: a rank's
///    QKV rows as [q_r; k_r; v_r] (QKVParallelLinear), the vocabulary padded
///    to a multiple of 64 (VocabParallelEmbedding), engine names
///    (engine_names.h). Same rank order and sizes as Megatron's.
///  - kHf: unsharded Hugging Face tensors under their HF names (tp = etp =
///    cp = 1; pipeline stages and EP ranks each hold whole tensors).
enum class LayoutFamily : uint8_t { kMegatron, kVllm, kSglang, kHf };

/// Which parameters of the model a layout's ranks hold.
///  - kAll: every parameter (the default), MTP layers included when the
///    spec has them.
///  - kMain: every parameter but the MTP layers: the main model of an engine
///    that runs them as a separate draft model (a part=mtp destination).
///  - kMtp: the multi-token-prediction head run as a speculative-decoding
///    draft model: the MTP layers ("mtp.layers.K.*", ModelSpec::mtp_layers)
///    with the embedding and the output layer they share with the main
///    model (vLLM deepseek_mtp.py DeepSeekMTP, SGLang deepseek_nextn.py
///    DeepseekV3ForCausalLMNextN). Its own sizes (vLLM's
///    speculative_config draft_tensor_parallel_size), pp = 1.
enum class ModelPart : uint8_t { kAll, kMain, kMtp };

/// True when a layout of part `part` holds parameter `p` on some rank.
bool PartHolds(ModelPart part, const ParamSpec& p);

/// "megatron", "vllm", "sglang" or "hf".
std::string_view LayoutFamilyName(LayoutFamily family);
/// Inverse of LayoutFamilyName. Errors: kInvalidArgument naming the text.
Result<LayoutFamily> ParseLayoutFamily(std::string_view text);

/// Parallel sizes as a user writes them. etp == 0 means "same as tp"
/// (Megatron's expert_tensor_parallel_size default). pp_first / pp_last are
/// Megatron's decoder_first/last_pipeline_num_layers; -1 when unset.
struct ParallelConfig {
  int tp = 1;
  int pp = 1;
  int ep = 1;
  int etp = 0;
  int cp = 1;
  int pp_first = -1;
  int pp_last = -1;
  LayoutFamily family = LayoutFamily::kMegatron;
  /// Expert placement with redundant experts, as vLLM's EPLB state holds it
  /// (vllm/distributed/eplb/eplb_state.py physical_to_logical_map): physical
  /// slot s, on EP rank s / (size / ep) at local slot s % (size / ep), holds
  /// logical expert expert_placement[s]. Empty: Megatron's contiguous
  /// placement (EP rank r holds experts [r * E / ep, (r + 1) * E / ep)).
  std::vector<int> expert_placement;
  /// The parameters the layout holds (ModelPart).
  ModelPart part = ModelPart::kAll;
  /// vllm / sglang only: each routed expert's w13 holds its up rows before
  /// its gate rows ([up_r; gate_r], scales likewise), as FusedMoE loads it
  /// for kernels that want [Up, Gate] (SGLang and vLLM quant methods'
  /// load_up_proj_weight_first: FlashInfer CUTLASS / TRT-LLM MoE backends,
  /// fused_moe/layer.py _load_w13). "w13=up_gate"; default "gate_up".
  bool w13_up_first = false;

  int expert_tp() const { return etp == 0 ? tp : etp; }
  /// Canonical string, e.g. "tp=4,pp=1,ep=2,etp=1" (cp, pp_first/pp_last,
  /// family, part and placement appear only when set:
  /// "tp=2,pp=1,ep=2,etp=2,family=vllm,part=mtp,placement=0:1:2:3:0:3";
  /// part is "all", "main" or "mtp"; ",w13=up_gate" when w13_up_first).
  std::string ToString() const;
};

/// Parses "tp=4,pp=2,ep=2,etp=1,cp=1,pp_first=3,pp_last=3,family=vllm,
/// part=mtp,w13=up_gate,placement=0:1:2:3"; omitted sizes are 1, etp omitted =
/// tp, family omitted = megatron, part omitted = all, placement (logical expert
/// of each physical slot,
/// ':'-separated) omitted = contiguous, order free, spaces not allowed.
/// Errors: kInvalidArgument naming the bad key or value.
Result<ParallelConfig> ParseParallelConfig(std::string_view text);

/// A ParallelConfig bound to a world size and a model; all checks done.
class Layout {
 public:
  /// Validates the layout for the model and world size: world divisible by
  /// tp*cp*pp and by etp*ep*pp; layers divisible over the pipeline (with
  /// uneven first/last stages the remaining layers must divide over the middle
  /// stages); experts divisible by ep (ep > 1 needs experts); attention heads
  /// divisible by tp and query groups divisible by tp or tp by them
  /// (layouts.md §1.3); every split dimension divisible by its group size.
  /// Families: hf needs tp = etp = cp = 1; vllm / sglang need cp = 1, tp
  /// dividing the vocabulary padded to 64, and a model without cross
  /// attention (Mllama). An expert placement must have a multiple of ep
  /// slots, at least num_experts, name every expert in [0, num_experts) at
  /// least once and no expert twice on one EP rank. part=main and part=mtp
  /// need a spec with MTP layers, part=mtp pp = 1; w13=up_gate a vllm or
  /// sglang family.
  /// Errors: kInvalidArgument with the reason, naming the field or tensor.
  static Result<Layout> Create(const ParallelConfig& config, int world_size,
                               const ModelSpec& spec);

  const ParallelConfig& config() const { return config_; }
  int world_size() const { return world_; }
  int tp() const { return config_.tp; }
  int pp() const { return config_.pp; }
  int ep() const { return config_.ep; }
  int etp() const { return config_.expert_tp(); }
  int cp() const { return config_.cp; }
  LayoutFamily family() const { return config_.family; }
  int dp() const { return dp_; }    ///< world / (tp * cp * pp)
  int edp() const { return edp_; }  ///< world / (etp * ep * pp)

  // Coordinates of a rank in [0, world_size) of this layout.
  int TpRank(int rank) const { return rank % tp(); }
  int CpRank(int rank) const { return (rank / tp()) % cp(); }
  int DpRank(int rank) const { return (rank / (tp() * cp())) % dp_; }
  int PpRank(int rank) const { return rank / (world_ / pp()); }
  int EtpRank(int rank) const { return rank % etp(); }
  int EpRank(int rank) const { return (rank / etp()) % ep(); }
  int EdpRank(int rank) const { return (rank / (etp() * ep())) % edp_; }
  /// Inverse maps.
  int DenseRank(int tp_rank, int cp_rank, int dp_rank, int pp_rank) const;
  int ExpertRank(int etp_rank, int ep_rank, int edp_rank, int pp_rank) const;

  /// First global layer of a pipeline stage, and its number of layers.
  int StageFirstLayer(int pp_rank) const;
  int StageNumLayers(int pp_rank) const;
  /// Pipeline stage that builds global layer `layer`.
  int StageOfLayer(int layer) const;
  /// Routed-expert slots per EP rank (0 for dense models): num_experts / ep,
  /// or the placement's slots / ep.
  int ExpertsPerRank() const { return experts_per_rank_; }
  /// The local slot of logical expert `expert` on EP rank `ep_rank`, -1 when
  /// that EP rank does not hold it (or `expert` is not a routed expert).
  int LocalExpertSlot(int ep_rank, int expert) const;
  /// The EP ranks holding logical expert `expert`, ascending (one without a
  /// placement; its replicas with one).
  std::vector<int> ExpertEpRanks(int expert) const;
  /// Experts with the same ExpertEpRanks share a class, in
  /// [0, ExpertClassCount()): the EP rank owning it without a placement.
  int ExpertClass(int expert) const;
  int ExpertClassCount() const;

 private:
  Layout() = default;
  ParallelConfig config_;
  int world_ = 1;
  int dp_ = 1;
  int edp_ = 1;
  int num_layers_ = 0;
  int experts_per_rank_ = 0;
  int first_layers_ = 0;   // layers of stage 0
  int middle_layers_ = 0;  // layers of each middle stage
  // With an expert placement: slot_[ep_rank * num_experts + e] (-1: not
  // held), each expert's EP ranks and its class.
  std::vector<int> slot_;
  std::vector<std::vector<int>> expert_ranks_;
  std::vector<int> expert_class_;
  int expert_classes_ = 0;
  int num_experts_ = 0;
  Status IndexPlacement();
  Status IndexExpertClasses();
};

}  // namespace refit

#endif  // REFIT_CORE_LAYOUT_H_
