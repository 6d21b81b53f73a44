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

#include "refit/core/model_spec.h"
#include "refit/core/status.h"

namespace refit {

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

  int expert_tp() const { return etp == 0 ? tp : etp; }
  /// Canonical string, e.g. "tp=4,pp=1,ep=2,etp=1" (cp and pp_first/pp_last
  /// appear only when set).
  std::string ToString() const;
};

/// Parses "tp=4,pp=2,ep=2,etp=1,cp=1,pp_first=3,pp_last=3"; omitted sizes are
/// 1, etp omitted = tp, order free, spaces not allowed.
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
  /// Routed experts per EP rank (0 for dense models).
  int ExpertsPerRank() const { return experts_per_rank_; }

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
};

}  // namespace refit

#endif  // REFIT_CORE_LAYOUT_H_
