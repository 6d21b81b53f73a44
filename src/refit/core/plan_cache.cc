#include "refit/core/plan_cache.h"

#include <xxhash.h>

namespace refit {

namespace {

std::array<int, 9> SizesOf(const Layout& l) {
  const ParallelConfig& c = l.config();
  return {l.tp(),     l.pp(),    l.ep(),
          l.dp(),     l.etp(),   l.cp(),
          c.pp_first, c.pp_last, static_cast<int>(c.family)};
}

// XXH64 of a layout's expert placement; 0 when it has none.
uint64_t PlacementHash(const Layout& l) {
  const std::vector<int>& p = l.config().expert_placement;
  return p.empty() ? 0 : XXH64(p.data(), p.size() * sizeof(int), 3);
}

}  // namespace

uint64_t SpecFingerprint(const ModelSpec& spec) {
  XXH64_state_t* state = XXH64_createState();
  XXH64_reset(state, 0);
  for (const ParamSpec& p : spec.params) {
    XXH64_update(state, p.name.data(), p.name.size() + 1);
    XXH64_update(state, p.shape.data(), p.shape.size() * sizeof(int64_t));
    const auto dtype = static_cast<uint8_t>(p.dtype);
    XXH64_update(state, &dtype, 1);
  }
  const uint64_t h = XXH64_digest(state);
  XXH64_freeState(state);
  return h;
}

PlanCacheKey MakePlanCacheKey(const ModelSpec& spec, const RefitTopology& topo,
                              int pool_index, const PlanOptions& options) {
  PlanCacheKey k;
  k.src = SizesOf(topo.src);
  k.dst = SizesOf(topo.dst);
  k.num_experts = spec.num_experts;
  k.src_rank_offset = topo.src_rank_offset;
  k.dst_rank_offset = topo.dst_rank_offset;
  k.world_size = topo.world_size;
  k.pool_index = pool_index;
  k.fingerprint = SpecFingerprint(spec);
  if (!options.dst_block.empty()) {
    k.options_fingerprint =
        XXH64(options.dst_block.data(),
              options.dst_block.size() * sizeof(int64_t), 1);
  }
  if (options.fanout_gpus_per_node > 0) {
    const uint64_t excluded =
        XXH64(options.no_fanout.data(), options.no_fanout.size(), 2);
    k.options_fingerprint ^=
        XXH64(&excluded, sizeof(excluded),
              static_cast<uint64_t>(options.fanout_gpus_per_node));
  }
  k.placement = PlacementHash(topo.src) ^ (PlacementHash(topo.dst) * 3);
  return k;
}

Result<std::shared_ptr<const ReshardPlan>> PlanCache::GetOrBuild(
    const ModelSpec& spec, const RefitTopology& topo, int pool_index,
    const PlanOptions& options) {
  const PlanCacheKey key = MakePlanCacheKey(spec, topo, pool_index, options);
  auto it = plans_.find(key);
  if (it != plans_.end()) {
    ++hits_;
    return it->second;
  }
  REFIT_ASSIGN_OR_RETURN(ReshardPlan plan,
                         BuildReshardPlan(spec, topo, options));
  auto shared = std::make_shared<const ReshardPlan>(std::move(plan));
  plans_.emplace(key, shared);
  return shared;
}

}  // namespace refit
