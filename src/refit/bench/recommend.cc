#include "refit/bench/recommend.h"

#include <fmt/core.h>

#include <map>

namespace refit::bench {

namespace {

// Bytes on the wire: after sender-side conversion where measured.
uint64_t WireBytes(const BenchRow& r) {
  return r.wire_source_bytes > 0 ? r.wire_bytes : r.traffic.moved_bytes;
}

// True when `a` is the better fitting candidate than `b`: the shorter
// modeled makespan (modeled on the plan's unconverted bytes), then fewer
// inference GPUs, then fewer bytes on the wire (an FP8 destination over a
// BF16 one of the same layout).
bool Faster(const BenchRow& a, const BenchRow& b) {
  if (a.schedule.makespan_ms != b.schedule.makespan_ms) {
    return a.schedule.makespan_ms < b.schedule.makespan_ms;
  }
  if (a.scenario.dst_world != b.scenario.dst_world) {
    return a.scenario.dst_world < b.scenario.dst_world;
  }
  return WireBytes(a) < WireBytes(b);
}

Recommendation Choose(const std::string& model,
                      const std::vector<const BenchRow*>& rows,
                      const GpuMemory& gpu) {
  const BenchRow* best = nullptr;
  const BenchRow* smallest = nullptr;
  int fitting = 0;
  for (const BenchRow* r : rows) {
    if (!smallest ||
        r->memory.max_gpu_bytes() < smallest->memory.max_gpu_bytes()) {
      smallest = r;
    }
    if (!r->fits) continue;
    ++fitting;
    if (!best || Faster(*r, *best)) best = r;
  }
  if (best == nullptr) {
    return {model, "",
            fmt::format("none of {} candidates fits: the leanest, {}, needs "
                        "{:.1f} GB on its most loaded GPU, above the {:.1f} GB "
                        "budget; it needs more GPUs per replica",
                        rows.size(), smallest->scenario.name,
                        smallest->memory.max_gpu_bytes() / 1e9,
                        gpu.budget_bytes() / 1e9)};
  }
  return {model, best->scenario.name,
          fmt::format("the fastest of {} fitting candidates (of {}): "
                      "modeled makespan {:.0f} ms (T_LB {:.0f} ms) into {} "
                      "inference GPUs; the most loaded GPU of either side "
                      "holds {:.1f} GB of a {:.1f} GB budget",
                      fitting, rows.size(), best->schedule.makespan_ms,
                      best->schedule.t_lb_ms, best->scenario.dst_world,
                      best->memory.max_gpu_bytes() / 1e9,
                      gpu.budget_bytes() / 1e9)};
}

}  // namespace

std::vector<Recommendation> Recommend(const std::vector<BenchRow>& rows,
                                      const GpuMemory& gpu) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<const BenchRow*>> by_model;
  for (const BenchRow& r : rows) {
    auto [it, fresh] = by_model.try_emplace(r.scenario.model);
    if (fresh) order.push_back(r.scenario.model);
    it->second.push_back(&r);
  }
  std::vector<Recommendation> out;
  for (const std::string& m : order) out.push_back(Choose(m, by_model[m], gpu));
  return out;
}

}  // namespace refit::bench
