// Rebuilding a plan after an EPLB placement change (RebuildReshardPlan)
// against building it afresh, on Kimi-K2 (data/model-configs) row 8 of the
// bench suite: tp=8,ep=8,etp=8 over 64 trainer GPUs into tp=8,ep=4,etp=8
// over 32 inference GPUs with 100 expert slots per EP rank (384 experts, 16
// redundant), where two experts trade EP ranks. Google Benchmark; not a
// test. Run: build/src/refit/core/refit_planner_bench.
#include <benchmark/benchmark.h>

#include <fstream>
#include <optional>
#include <sstream>

#include "refit/core/planner.h"

namespace refit {
namespace {

struct Row {
  ModelSpec spec;
  std::optional<RefitTopology> before;
  std::optional<RefitTopology> after;
};

// 384 experts over 4 EP ranks, 100 slots each: expert e on rank e % 4, and
// the experts 0..15 once more on the rank after theirs. `swap`: experts
// 100 and 101 trade EP ranks.
std::vector<int> Placement(bool swap) {
  std::vector<std::vector<int>> ranks(4);
  for (int e = 0; e < 384; ++e) ranks[e % 4].push_back(e);
  for (int e = 0; e < 16; ++e) ranks[(e + 1) % 4].push_back(e);
  if (swap) std::swap(ranks[0][25], ranks[1][25]);
  std::vector<int> out;
  for (const auto& r : ranks) out.insert(out.end(), r.begin(), r.end());
  return out;
}

const Row& KimiRow8() {
  static const Row* row = [] {
    std::ifstream in(std::string(REFIT_DATA_ROOT) +
                     "/data/model-configs/kimi-k2-instruct/config.json");
    std::stringstream text;
    text << in.rdbuf();
    auto* r = new Row{*ModelSpecFromConfigJson(text.str()), {}, {}};
    const Layout src =
        *Layout::Create(*ParseParallelConfig("tp=8,ep=8,etp=8"), 64, r->spec);
    for (bool swap : {false, true}) {
      ParallelConfig d = *ParseParallelConfig("tp=8,ep=4,etp=8");
      d.expert_placement = Placement(swap);
      const Layout dst = *Layout::Create(d, 32, r->spec);
      (swap ? r->after : r->before) = *MakeTopology(src, dst, 0, 64, 96);
    }
    return r;
  }();
  return *row;
}

// rank = state.range(0): -1 the whole plan, else that rank's own.
void BM_BuildAfresh(benchmark::State& state) {
  const Row& row = KimiRow8();
  const int rank = static_cast<int>(state.range(0));
  for (auto _ : state) {
    Result<ReshardPlan> plan =
        rank < 0 ? BuildReshardPlan(row.spec, *row.after)
                 : BuildRankReshardPlan(row.spec, *row.after, rank);
    benchmark::DoNotOptimize(plan);
  }
}

void BM_RebuildAfterPlacementChange(benchmark::State& state) {
  const Row& row = KimiRow8();
  const int rank = static_cast<int>(state.range(0));
  const ReshardPlan before =
      rank < 0 ? *BuildReshardPlan(row.spec, *row.before)
               : *BuildRankReshardPlan(row.spec, *row.before, rank);
  RebuildStats stats;
  for (auto _ : state) {
    Result<ReshardPlan> plan = RebuildReshardPlan(
        row.spec, *row.after, rank, *row.before, before, {}, &stats);
    benchmark::DoNotOptimize(plan);
  }
  state.counters["params_replanned"] =
      static_cast<double>(stats.params_replanned);
  state.counters["params_kept"] = static_cast<double>(stats.params_kept);
}

BENCHMARK(BM_BuildAfresh)->Arg(-1)->Arg(64)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RebuildAfterPlacementChange)
    ->Arg(-1)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace refit

BENCHMARK_MAIN();
