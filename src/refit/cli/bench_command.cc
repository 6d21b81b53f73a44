#include <fmt/core.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "refit/bench/report.h"
#include "refit/cli/commands.h"

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
};

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

int RunBench(const BenchCliOptions& o) {
  Result<std::vector<bench::Scenario>> scenarios = Scenarios(o);
  if (!scenarios.ok()) return Fail(scenarios.status());
  std::vector<bench::BenchRow> rows;
  for (const bench::Scenario& s : *scenarios) {
    Result<bench::BenchRow> row = bench::RunScenario(s, o.bench);
    if (!row.ok()) return Fail(row.status());
    rows.push_back(*row);
  }
  fmt::print("## refit bench: suite {}\n\n{}", scenarios->front().suite,
             bench::MarkdownTable(rows, o.bench));
  if (!o.json_path.empty()) {
    const std::string tmp = o.json_path + ".tmp";
    std::ofstream(tmp) << bench::JsonReport(rows);
    std::error_code ec;
    std::filesystem::rename(tmp, o.json_path, ec);
    if (ec) return Fail(IoError("cannot write " + o.json_path));
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
  cmd->add_option("--json", o->json_path, "write the rows as a JSON array");
  return [o] { return RunBench(*o); };
}

}  // namespace refit::cli
