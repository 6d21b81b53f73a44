#include "refit/cli/plan_json.h"

#include <nlohmann/json.hpp>

namespace refit::cli {

std::string PlanJson(const ModelSpec& spec, const RefitTopology& topo,
                     const ReshardPlan& plan) {
  nlohmann::json shards = nlohmann::json::array();
  auto add_side = [&](const Layout& l, int offset, const char* side) {
    for (int r = 0; r < l.world_size(); ++r) {
      for (size_t p = 0; p < spec.params.size(); ++p) {
        const ParamSpec& ps = spec.params[p];
        if (!HoldsParam(ps, p, l, r)) continue;
        const ShardGeometry g = ShardOf(ps, l, ShardCoord(ps, l, r));
        shards.push_back(
            {side, r + offset, p, g.LocalElements() * DTypeSize(ps.dtype)});
      }
    }
  };
  add_side(topo.src, topo.src_rank_offset, "src");
  add_side(topo.dst, topo.dst_rank_offset, "dst");
  nlohmann::json pieces = nlohmann::json::array();
  for (const TransferOp& op : plan.ops) {
    for (const Piece& p : op.pieces) {
      pieces.push_back({op.src_rank, p.src_param, op.dst_rank, p.dst_param,
                        p.src_offset, p.dst_offset, p.run_bytes, p.nruns,
                        p.src_stride, p.dst_stride});
    }
  }
  return nlohmann::json{{"shards", shards}, {"pieces", pieces}}.dump() + "\n";
}

}  // namespace refit::cli
