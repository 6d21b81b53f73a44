// A cache of reshard plans, keyed like Megatron's _PlanCacheKey (refit.py:
// TP, PP, EP, DP, ETP of both sides, num_experts, rank offsets, world size,
// pool index) plus a fingerprint of the parameters' names, shapes and dtypes,
// which Megatron's key lacks (megatron_resharding.md §1.7).
#ifndef REFIT_CORE_PLAN_CACHE_H_
#define REFIT_CORE_PLAN_CACHE_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "refit/core/planner.h"

namespace refit {

struct PlanCacheKey {
  // tp, pp, ep, dp, etp, cp, pp_first, pp_last of each side.
  std::array<int, 9> src{};  ///< sizes, pp_first/last, family
  std::array<int, 9> dst{};
  int num_experts = 0;
  int src_rank_offset = 0;
  int dst_rank_offset = 0;
  int world_size = 0;
  int pool_index = 0;
  uint64_t fingerprint = 0;
  uint64_t options_fingerprint = 0;  ///< of PlanOptions (0 when empty)
  uint64_t placement = 0;  ///< of both expert placements (0 when none)

  auto Tie() const {
    return std::tie(src, dst, num_experts, src_rank_offset, dst_rank_offset,
                    world_size, pool_index, fingerprint, options_fingerprint,
                    placement);
  }
  bool operator<(const PlanCacheKey& o) const { return Tie() < o.Tie(); }
  bool operator==(const PlanCacheKey& o) const { return Tie() == o.Tie(); }
};

/// XXH64 over every parameter's name, shape and dtype, in spec order.
uint64_t SpecFingerprint(const ModelSpec& spec);

/// The key of a plan for this spec, topology, destination pool and options.
PlanCacheKey MakePlanCacheKey(const ModelSpec& spec, const RefitTopology& topo,
                              int pool_index = 0,
                              const PlanOptions& options = {});

/// Plans built once and shared. Not thread-safe; one cache per process.
class PlanCache {
 public:
  /// The cached plan for the key, or builds, stores and returns it.
  /// Errors: those of BuildReshardPlan (nothing is cached then).
  Result<std::shared_ptr<const ReshardPlan>> GetOrBuild(
      const ModelSpec& spec, const RefitTopology& topo, int pool_index = 0,
      const PlanOptions& options = {});
  size_t size() const { return plans_.size(); }
  uint64_t hits() const { return hits_; }
  void Clear() { plans_.clear(); }

 private:
  std::map<PlanCacheKey, std::shared_ptr<const ReshardPlan>> plans_;
  uint64_t hits_ = 0;
};

}  // namespace refit

#endif  // REFIT_CORE_PLAN_CACHE_H_
