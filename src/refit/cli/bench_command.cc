#include <fmt/core.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "refit/bench/report.h"
#include "refit/cli/commands.h"
#ifdef REFIT_HAVE_MPI
#include "refit/cli/bench_mpi.h"
#include "refit/transport/mpi/mpi_world.h"
#endif

namespace refit::cli {

namespace {

struct BenchCliOptions {
  bench::BenchOptions bench;
  std::string suite;
  std::string model;
  std::string src;
  std::string dst;
  int world = 0;
  int src_world = 0;
  int dst_world = 0;
  std::string json_path;
  std::string out_dir;    ///< --out: report.md, report.json and the charts
  double timeout_s = 60;  ///< --transport mpi: how long a rank waits for a peer
  std::string gpu;        ///< --gpu h100|h200|b200: sets bench.gpu.hbm_gb
  std::string fanout = "none";  ///< --fanout node|none: sets bench.fanout
};

// --fanout: "node" turns node fan-out on, "none" leaves it off.
// Errors: kInvalidArgument for any other value.
Status ApplyFanout(BenchCliOptions& o) {
  if (o.fanout != "node" && o.fanout != "none") {
    return InvalidArgument("--fanout: '" + o.fanout +
                           "' is not one of node, none");
  }
  o.bench.fanout = o.fanout == "node";
  return OkStatus();
}

// Writes `text` to `path` whole (through a temporary file) or not at all.
Status WriteWhole(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  std::ofstream(tmp) << text;
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return ec ? IoError("cannot write " + path.string()) : OkStatus();
}

// --out DIR: report.md, report.json, then the PNG charts drawn from the JSON
// by bench/plot_report.py with Debian's python3-matplotlib ($REFIT_PYTHON,
// default /usr/bin/python3). Errors: the files that cannot be written; the
// chart script's failure (the report files stay).
Status WriteReport(const std::vector<bench::BenchRow>& rows,
                   const BenchCliOptions& o) {
  namespace fs = std::filesystem;
  const fs::path dir(o.out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return IoError("--out: cannot create " + o.out_dir);
  REFIT_RETURN_IF_ERROR(
      WriteWhole(dir / "report.md", bench::MarkdownReport(rows, o.bench)));
  REFIT_RETURN_IF_ERROR(
      WriteWhole(dir / "report.json", bench::JsonFullReport(rows, o.bench)));
  const char* python = std::getenv("REFIT_PYTHON");
  const std::string cmd =
      fmt::format("'{}' '{}/bench/plot_report.py' '{}' '{}'",
                  python ? python : "/usr/bin/python3", REFIT_SOURCE_DIR,
                  (dir / "report.json").string(), dir.string());
  if (std::system(cmd.c_str()) != 0) {
    return FailedPrecondition(
        "--out: the charts were not drawn (" + cmd +
        " failed; it needs python3-matplotlib); report.md and report.json "
        "are in " +
        o.out_dir);
  }
  return OkStatus();
}

// --transport mpi: this process must be one of mpirun's, and the runs need
// --scale. Errors: kInvalidArgument / kFailedPrecondition saying what to do.
Status CheckMpiTransport(const BenchCliOptions& o) {
#ifdef REFIT_HAVE_MPI
  if (exec::MpiWorld::LaunchSize() < 1) {
    return FailedPrecondition(
        "--transport mpi runs one rank per process: start it under mpirun, "
        "e.g. mpirun -np 8 refit bench --transport mpi --suite refit-8gpu "
        "--scale 8");
  }
  if (o.bench.scale < 1) {
    return InvalidArgument("--transport mpi needs --scale K");
  }
  return OkStatus();
#else
  (void)o;
  return FailedPrecondition(
      "--transport mpi: this refit was built without MPI (install an MPI, "
      "e.g. libopenmpi-dev, and rebuild)");
#endif
}

Result<std::vector<bench::Scenario>> Scenarios(const BenchCliOptions& o) {
  if (!o.suite.empty()) {
    if (!o.model.empty()) {
      return InvalidArgument("give either --suite or --model, not both");
    }
    return bench::BuiltinSuite(o.suite, o.bench.configs_dir);
  }
  if (o.model.empty() || o.src.empty() || o.dst.empty()) {
    return InvalidArgument(
        "give --suite NAME, or --model CONFIG --src L --dst L with --world N "
        "or --src-world S --dst-world M");
  }
  const bool split = o.src_world > 0 || o.dst_world > 0;
  if (split == (o.world > 0) ||
      (split && (o.src_world < 1 || o.dst_world < 1))) {
    return InvalidArgument(
        "give --world N (collocated) or --src-world S --dst-world M");
  }
  bench::Scenario s{"cli",
                    "1",
                    o.model,
                    o.src,
                    o.dst,
                    split ? o.src_world : o.world,
                    split ? o.dst_world : o.world,
                    !split,
                    ""};
  return std::vector<bench::Scenario>{s};
}

int RunBench(BenchCliOptions o) {
  if (Status st = ApplyFanout(o); !st.ok()) return Fail(st);
  if (!o.gpu.empty()) {
    Result<double> hbm = bench::GpuHbmGb(o.gpu);
    if (!hbm.ok()) return Fail(hbm.status());
    o.bench.gpu.hbm_gb = *hbm;
  }
  Result<std::vector<bench::Scenario>> scenarios = Scenarios(o);
  if (!scenarios.ok()) return Fail(scenarios.status());
  if (o.bench.transport == "mpi") {
    if (Status st = CheckMpiTransport(o); !st.ok()) return Fail(st);
#ifdef REFIT_HAVE_MPI
    return RunMpiBench(
        *scenarios, o.bench, o.json_path,
        std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
#endif
  }
  std::vector<bench::BenchRow> rows;
  for (const bench::Scenario& s : *scenarios) {
    Result<bench::BenchRow> row = bench::RunScenario(s, o.bench);
    if (!row.ok()) return Fail(row.status());
    rows.push_back(*row);
  }
  fmt::print("## refit bench: suite {}\n\n{}", scenarios->front().suite,
             bench::MarkdownTable(rows, o.bench));
  if (!o.json_path.empty()) {
    if (Status st = WriteWhole(o.json_path, bench::JsonReport(rows));
        !st.ok()) {
      return Fail(st);
    }
  }
  if (!o.out_dir.empty()) {
    if (Status st = WriteReport(rows, o); !st.ok()) return Fail(st);
  }
  int wrong = 0;
  for (const auto& r : rows) wrong += r.wrong > 0;
  return wrong == 0 ? 0 : 1;
}

}  // namespace

Command AddBenchCommand(CLI::App& app) {
  auto o = std::make_shared<BenchCliOptions>();
  o->bench.configs_dir = REFIT_DEFAULT_CONFIGS;
  o->bench.work_dir = std::filesystem::temp_directory_path().string();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Plan refit scenarios at full scale: traffic, lower bound, "
      "modeled time; optionally run them at reduced size");
  cmd->add_option("--suite", o->suite, "refit-8gpu, kimi-k2 or models");
  cmd->add_option("--model", o->model,
                  "one scenario: config.json, its folder, "
                  "or a folder name under --configs");
  cmd->add_option("--src", o->src, "one scenario: source layout");
  cmd->add_option("--dst", o->dst, "one scenario: destination layout");
  cmd->add_option("--world", o->world, "one scenario: collocated ranks");
  cmd->add_option("--src-world", o->src_world, "one scenario: source ranks");
  cmd->add_option("--dst-world", o->dst_world,
                  "one scenario: destination ranks");
  cmd->add_option("--configs", o->bench.configs_dir, "model configs directory")
      ->capture_default_str();
  auto* gpu = cmd->add_option("--gpu", o->gpu,
                              "the GPU of every rank: h100 (80 GB), h200 "
                              "(141 GB) or b200 (192 GB)");
  cmd->add_option("--gpu-mem-gb", o->bench.gpu.hbm_gb,
                  "HBM per GPU, GB (1e9 B), for the memory and fit columns")
      ->capture_default_str()
      ->check(Positive())
      ->excludes(gpu);
  cmd->add_option("--headroom", o->bench.gpu.headroom,
                  "fraction of HBM weights and staging may use (the rest is "
                  "the inference engine's KV cache)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--gpus-per-node", o->bench.cluster.gpus_per_node)
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--nvlink-gbps", o->bench.cluster.nvlink_gbps,
                  "per GPU per direction, 1e9 B/s")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--network-gbps", o->bench.cluster.network_gbps,
                  "per GPU per direction between nodes, 1e9 B/s")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--latency-us", o->bench.cluster.latency_us, "per message")
      ->capture_default_str()
      ->check(Positive(true));
  cmd->add_option("--max-staging-bytes", o->bench.schedule.max_staging_bytes,
                  "staging memory bound per rank")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--max-inflight", o->bench.schedule.max_inflight,
                  "outstanding chunks per rank per direction")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--scale", o->bench.scale,
                  "also run each scenario with widths divided by K, bit-exact")
      ->check(Positive());
  cmd->add_option("--iters", o->bench.iters,
                  "--scale: timed refits after one warm-up")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--device", o->bench.device,
                  "--scale runs (embedded): tensors on cpu or on the cuda "
                  "device")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--transport", o->bench.transport,
                  "--scale runs on: embedded (threads of this process) or mpi "
                  "(under mpirun, one rank per process; also times "
                  "MPI_Alltoallv of the same bytes)")
      ->capture_default_str()
      ->check(CLI::IsMember({"embedded", "mpi"}));
  cmd->add_option("--timeout", o->timeout_s,
                  "--transport mpi: seconds a rank waits for a peer")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--dst-dtype", o->bench.dst_dtype,
                  "also report wire bytes with sender-side conversion into "
                  "bf16, f16, f32, fp8-block or mxfp8 (and refit into it "
                  "with --scale)");
  cmd->add_flag("--engine-repack", o->bench.engine_repack,
                "also report the second pass an engine's loader makes on "
                "Megatron/HF tensors (bytes and HBM time per destination "
                "GPU), which refit's vllm/sglang/hf families skip");
  cmd->add_option("--hbm-gbps", o->bench.cluster.hbm_gbps,
                  "HBM bandwidth per GPU for --engine-repack")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--fanout", o->fanout,
                  "node: also plan every scenario with node fan-out (one "
                  "rank per node receives each replicated shard over the "
                  "network and forwards it over NVLink; --gpus-per-node "
                  "ranks to a node) and report its figures beside the plain "
                  "plan's; --scale runs refit with it; none: off")
      ->capture_default_str();
  cmd->add_option("--json", o->json_path, "write the rows as a JSON array");
  cmd->add_option("--out", o->out_dir,
                  "write DIR/report.md (table and a recommendation per "
                  "model), DIR/report.json and PNG charts "
                  "(bench/plot_report.py, python3-matplotlib)");
  return [o] { return RunBench(*o); };
}

}  // namespace refit::cli
