// Runs one benchmark scenario: plans it at full size, reports its traffic,
// plan cost, lower bound and modeled schedule, and optionally executes it at
// reduced size on the embedded copy service with a bit-exact check.
#ifndef REFIT_BENCH_BENCH_RUNNER_H_
#define REFIT_BENCH_BENCH_RUNNER_H_

#include <cstdint>
#include <optional>
#include <string>

#include "refit/bench/gpu_memory.h"
#include "refit/bench/scenario.h"
#include "refit/bench/schedule.h"
#include "refit/bench/traffic.h"
#include "refit/core/format/dst_format.h"
#include "refit/core/model_spec.h"
#include "refit/core/planner.h"

namespace refit::bench {

struct BenchOptions {
  ClusterModel cluster;
  GpuMemory gpu;  ///< the GPU every rank runs on (memory and fit columns)
  ScheduleOptions schedule;
  int scale = 0;  ///< 0: plan only; K > 0: also run at 1/K widths
  int iters = 1;  ///< --scale: timed refits after one warm-up
  /// Where the --scale runs run: "embedded" (RunScenario: ranks are threads)
  /// or "mpi" (`refit bench --transport mpi`: one process per rank). The
  /// report adds the MPI_Alltoallv columns for "mpi".
  std::string transport = "embedded";
  /// Where the embedded --scale runs keep their tensors: "cpu" or "cuda".
  std::string device = "cpu";
  /// "" or a `--dst-dtype` value (bf16, f16, f32, fp8-block, mxfp8): report
  /// the bytes on the wire with sender-side conversion (PlanWireBytes), and
  /// refit into that format in --scale runs.
  std::string dst_dtype;
  /// Node fan-out: also plan every scenario with
  /// PlanOptions::fanout_gpus_per_node = cluster.gpus_per_node and report
  /// its figures (BenchRow::fanout) beside the plain plan's; embedded
  /// --scale runs then refit with fan-out (RefitJobOptions). `refit bench
  /// --fanout node`.
  bool fanout = false;
  /// Report the second pass an engine's weight loader makes when it
  /// receives Megatron or HF tensors instead of its own layout (vLLM's
  /// load_weights narrowing and copying every byte into its parameters):
  /// bytes read and written on the busiest destination GPU and their time
  /// at cluster.hbm_gbps. Refit's engine families (docs/LAYOUTS.md §2) write
  /// the engine's tensors directly and skip it. `refit bench
  /// --engine-repack`.
  bool engine_repack = false;
  /// Time the plan builds (the plan ms columns: several builds of the
  /// whole plan and of every rank's); false leaves them 0 (tests).
  bool time_plans = true;
  std::string configs_dir;  ///< where scenario models are looked up
  std::string work_dir;     ///< scratch space for --scale checkpoints
};

/// The figures of a scenario planned with node fan-out (BenchOptions::fanout):
/// the same destination bytes as the plain plan, fewer of them over the
/// network, the rest forwarded inside nodes in a second phase.
struct FanoutFigures {
  /// Both phases (TrafficStats counts forwards as intra-node messages).
  TrafficStats traffic;
  uint64_t bytes_forwarded = 0;  ///< ReshardPlan::bytes_forwarded
  /// The two phases back to back (ModelPhasedSchedule), ms.
  ScheduleModel schedule;
};

struct BenchRow {
  Scenario scenario;
  std::string architecture;
  int ranks = 0;
  TrafficStats traffic;
  /// Median of 5 builds, in one thread, of the whole plan and every rank's
  /// op lists (BuildReshardPlan + ExtractRankPlan), ms.
  double plan_ms_all_ranks = 0;
  /// Median of 5 builds of the slowest rank's own plan
  /// (BuildRankReshardPlan; the slowest found by building every rank once),
  /// ms.
  double plan_ms_max_rank = 0;
  uint64_t plan_mem_bytes = 0;  ///< heap bytes of the plan and rank plans
  /// Bytes each destination rank receives from other ranks, in destination
  /// layout order (the plan's, before any conversion).
  std::vector<uint64_t> recv_bytes_per_dst_rank;
  ScheduleModel schedule;
  /// BenchOptions::fanout only: the scenario planned with node fan-out
  /// (traffic and schedule above stay the plain plan's). Parameters the
  /// destination format quantises on receipt are kept out of the fan-out
  /// (FormatPlan::plan_options().no_fanout), as the refit runs them; the
  /// bytes are the source's, as in `traffic`.
  std::optional<FanoutFigures> fanout;
  int scale = 0;
  int64_t wrong = -1;          ///< --scale only: destination shards wrong
  double scaled_refit_ms = 0;  ///< --scale only: median refit time
  uint64_t scaled_bytes = 0;   ///< --scale only: destination bytes
  /// --scale over MPI only (`refit bench --transport mpi`): the median
  /// MPI_Alltoallv time of the same per-pair byte matrix, in ms; 0 otherwise.
  double scaled_alltoallv_ms = 0;
  /// With dst_dtype: remote bytes on the wire after sender-side conversion
  /// (plan built with the formats' PlanOptions), quantised parameters and
  /// those the sender converts.
  uint64_t wire_bytes = 0;
  uint64_t wire_source_bytes = 0;  ///< the same plan's remote source bytes
  int64_t quantised = 0;
  int64_t send_side = 0;
  /// Per-GPU memory (weights in each side's format, staging) and whether the
  /// most loaded GPU fits BenchOptions::gpu.
  ScenarioMemory memory;
  bool fits = true;
};

/// A scenario at 1/K width: the scaled config.json text, its model spec and
/// the scenario's topology on it.
struct ScaledScenario {
  std::string config_json;
  ModelSpec spec;
  std::optional<RefitTopology> topo;  ///< always set on success
};

/// The scenario's model config text (its `model` path, or that folder under
/// `configs_dir`). Errors: kNotFound naming the scenario and path.
Result<std::string> ReadScenarioConfig(const Scenario& scenario,
                                       const std::string& configs_dir);

/// The scenario's topology on `spec`. Errors: kInvalidArgument naming the
/// scenario when a layout does not parse or divide.
Result<RefitTopology> ScenarioTopology(const Scenario& scenario,
                                       const ModelSpec& spec);

/// The scenario scaled to 1/`scale` width as `RunScenario` runs it: widths
/// stay multiples of every TP and ETP size of both layouts. `config_json` is
/// the full-size config text. Errors: those of ScaleConfigJson,
/// ModelSpecFromConfigJson and ScenarioTopology.
Result<ScaledScenario> ScaleScenario(const Scenario& scenario,
                                     const std::string& config_json, int scale);

/// Where RunScenario writes the scaled synthetic checkpoint of `scenario`:
/// `work_dir`/refit-bench-<suite>-<tag>.
std::string ScaledCheckpointDir(const Scenario& scenario,
                                const std::string& work_dir,
                                const std::string& tag);

/// The transform `dst_dtype` (a `--dst-dtype` value, or "" for none) asks
/// for. Errors: those of ApplyDstDType.
Result<PrecisionOptions> ScenarioPrecision(const std::string& dst_dtype);

/// The destination formats `dst_dtype` asks for on `spec` over `topo`
/// (identity formats for ""). Errors: those of ApplyDstDType and
/// ResolveFormats.
Result<FormatPlan> ScenarioFormats(const ModelSpec& spec,
                                   const RefitTopology& topo,
                                   const std::string& dst_dtype);

/// Errors: the model config cannot be read or built, a layout does not
/// divide (the message names the scenario), the formats do not resolve, or
/// the scaled run fails.
Result<BenchRow> RunScenario(const Scenario& scenario,
                             const BenchOptions& options);

}  // namespace refit::bench

#endif  // REFIT_BENCH_BENCH_RUNNER_H_
