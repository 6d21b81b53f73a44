#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "refit/bench/bench_runner.h"
#include "refit/bench/gpu_memory.h"
#include "refit/bench/report.h"
#include "refit/bench/scaled_config.h"
#include "refit/core/shard.h"

namespace refit::bench {
namespace {

BenchOptions Options(int scale) {
  BenchOptions o;
  o.configs_dir = std::string(REFIT_SOURCE_DIR) + "/data/model-configs";
  o.work_dir = std::filesystem::temp_directory_path().string();
  o.scale = scale;
  o.time_plans = false;  // timing is the benchmark's business, not a test's
  return o;
}

// Destination bytes computed from shard geometry alone, not from the plan.
uint64_t DestinationBytes(const Scenario& s, const BenchOptions& o) {
  std::ifstream in(o.configs_dir + "/" + s.model + "/config.json");
  std::stringstream ss;
  ss << in.rdbuf();
  const ModelSpec spec = *ModelSpecFromConfigJson(ss.str());
  const Layout dst =
      *Layout::Create(*ParseParallelConfig(s.dst), s.dst_world, spec);
  uint64_t total = 0;
  for (size_t i = 0; i < spec.params.size(); ++i) {
    const ParamSpec& p = spec.params[i];
    int64_t row = DTypeSize(p.dtype);
    for (size_t d = 1; d < p.shape.size(); ++d) row *= p.shape[d];
    for (int r = 0; r < dst.world_size(); ++r) {
      if (!HoldsParam(p, i, dst, r)) continue;
      const ShardGeometry g = ShardOf(p, dst, ShardCoord(p, dst, r));
      for (const Segment& seg : g.segments) {
        total += g.dim == 0 ? seg.length * row
                            : seg.length * p.shape[0] * DTypeSize(p.dtype);
      }
    }
  }
  return total;
}

// Seven seed-literal rows (ETP = 1) and the same seven layout pairs as one
// would deploy them (ETP = TP, FP8-block destinations).
TEST(SuiteTest, KimiSuiteIsBothFamilies) {
  auto suite = BuiltinSuite("kimi-k2", "");
  ASSERT_TRUE(suite.ok());
  ASSERT_EQ(suite->size(), 14u);
  EXPECT_EQ((*suite)[3].src, "tp=16,ep=4,etp=1");
  EXPECT_EQ((*suite)[3].dst, "tp=32,ep=2,etp=1");
  EXPECT_EQ((*suite)[3].src_world + (*suite)[3].dst_world, 128);
  EXPECT_TRUE((*suite)[5].collocated);
  EXPECT_EQ((*suite)[3].dst_dtype, "");
  for (int i = 0; i < 7; ++i) {
    const Scenario &seed = (*suite)[i], &deployed = (*suite)[i + 7];
    EXPECT_EQ(deployed.name, std::to_string(i + 8));
    EXPECT_EQ(deployed.src_world, seed.src_world);
    EXPECT_EQ(deployed.dst_world, seed.dst_world);
    EXPECT_EQ(deployed.collocated, seed.collocated);
    EXPECT_EQ(deployed.dst_dtype, "fp8-block");
  }
  EXPECT_EQ((*suite)[10].src, "tp=16,ep=4,etp=16");
  EXPECT_EQ((*suite)[10].dst, "tp=32,ep=2,etp=32");
  EXPECT_FALSE(BuiltinSuite("nope", "").ok());
}

// The deployable rows fit an H200 (weights in FP8 with their scales, plus
// the staging bound) and none of the seed-literal rows does.
TEST(SuiteTest, DeployableKimiRowsFitAnH200) {
  const BenchOptions o = Options(0);
  const GpuMemory h200{GpuHbmGb("h200").value(), 0.9};
  auto suite = BuiltinSuite("kimi-k2", "");
  ASSERT_TRUE(suite.ok());
  Result<std::string> config = ReadScenarioConfig((*suite)[0], o.configs_dir);
  ASSERT_TRUE(config.ok());
  const ModelSpec spec = *ModelSpecFromConfigJson(*config);
  for (size_t i = 0; i < suite->size(); ++i) {
    const Scenario& s = (*suite)[i];
    Result<RefitTopology> topo = ScenarioTopology(s, spec);
    ASSERT_TRUE(topo.ok()) << topo.status().ToString();
    Result<FormatPlan> formats = ScenarioFormats(spec, *topo, s.dst_dtype);
    ASSERT_TRUE(formats.ok()) << formats.status().ToString();
    const ScenarioMemory m = ComputeScenarioMemory(
        spec, *formats, *topo, o.schedule.max_staging_bytes);
    EXPECT_EQ(m.Fits(h200), i >= 7)
        << "kimi-k2/" << i + 1 << ": " << m.max_gpu_bytes() / 1e9 << " GB";
  }
}

// Kimi-K2 tp=16 -> tp=32 into block FP8 at full size: the sender quantises
// every linear weight whose shards hold whole 128 x 128 blocks (61 layers x
// (5 attention + 384 x 2 experts) + 60 x 2 shared - the 122 that TP=32 cuts:
// 60 shared-expert fc1/fc2 pairs of 2048 / 32 = 64 rows and the dense
// layer's fc1/fc2 of 18432 / 32 = 576), and the wire carries one byte per
// element plus a 4-byte scale per 16384 instead of two bytes.
TEST(WireBytesTest, KimiFp8BlockHalvesTheWire) {
  auto suite = BuiltinSuite("kimi-k2", "");
  ASSERT_TRUE(suite.ok());
  BenchOptions o = Options(0);
  o.dst_dtype = "fp8-block";
  Result<BenchRow> row = RunScenario((*suite)[3], o);
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  EXPECT_EQ(row->quantised, 46507);
  EXPECT_EQ(row->send_side, 46507 - 122);
  const double ratio = double(row->wire_bytes) / row->wire_source_bytes;
  EXPECT_GT(ratio, 0.5);
  EXPECT_LT(ratio, 0.502);
}

class KimiScenarioTest : public ::testing::TestWithParam<int> {};

// Full-size figures plus a bit-exact run at 1/1024 width (layer, head and
// expert counts unchanged, so the plan has the full-size structure).
TEST_P(KimiScenarioTest, FiguresAndScaledRun) {
  const BenchOptions o = Options(1024);
  const Scenario s = (*BuiltinSuite("kimi-k2", ""))[GetParam()];
  Result<BenchRow> row = RunScenario(s, o);
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  const TrafficStats& t = row->traffic;
  EXPECT_EQ(t.total_bytes, DestinationBytes(s, o));
  if (!s.collocated) {
    EXPECT_EQ(t.moved_bytes, t.total_bytes);
    EXPECT_EQ(t.internode_bytes, t.moved_bytes);  // disjoint nodes
  }
  // Every chunk crosses one network port at 50 GB/s at least.
  EXPECT_GE(row->schedule.t_lb_ms,
            std::max(t.max_send_bytes, t.max_recv_bytes) / 50e6 *
                (s.collocated ? 0.0 : 1.0));
  EXPECT_LE(row->schedule.t_lb_ms, row->schedule.makespan_ms);
  EXPECT_GE(row->schedule.efficiency, 0.9);
  EXPECT_LE(row->schedule.staging_bytes_max, o.schedule.max_staging_bytes);
  EXPECT_EQ(row->wrong, 0);
  EXPECT_GT(row->scaled_bytes, 0u);
}

// The seven seed-literal rows, and deployable row 8 (FP8-block
// destination); `refit bench --suite kimi-k2 --scale 64` runs all fourteen
// (docs/PERFORMANCE.md).
INSTANTIATE_TEST_SUITE_P(Kimi, KimiScenarioTest, ::testing::Range(0, 8));

// The configuration report: 7 MoE configs x (TP 4, TP 8) x (EP 1, EP = TP)
// x (BF16, FP8) and 2 dense configs x (TP 4, TP 8) x (BF16, FP8). Every BF16
// TP 8 candidate is planned here (the whole suite is `refit bench --suite
// models`); each row names its recommendation's figures.
TEST(BenchTest, ModelsSuiteIsTheConfigurationReport) {
  const BenchOptions o = Options(0);
  auto suite = BuiltinSuite("models", o.configs_dir);
  ASSERT_TRUE(suite.ok());
  EXPECT_EQ(suite->size(), 7u * 8 + 2 * 4);
  std::vector<BenchRow> rows;
  for (const Scenario& s : *suite) {
    EXPECT_EQ(s.src_world, 64) << s.name;
    EXPECT_EQ(s.dst_dtype.empty(), s.name.ends_with("-bf16")) << s.name;
    if (!s.name.ends_with("-bf16") || s.dst_world != 8) continue;
    Result<BenchRow> row = RunScenario(s, o);
    ASSERT_TRUE(row.ok()) << s.name << ": " << row.status().ToString();
    EXPECT_EQ(row->traffic.total_bytes, DestinationBytes(s, o)) << s.name;
    EXPECT_GE(row->schedule.efficiency, 0.9) << s.name;
    uint64_t received = 0;
    for (uint64_t b : row->recv_bytes_per_dst_rank) received += b;
    EXPECT_EQ(row->recv_bytes_per_dst_rank.size(), 8u) << s.name;
    EXPECT_EQ(received, row->traffic.moved_bytes) << s.name;
    rows.push_back(*row);
  }
  EXPECT_EQ(rows.size(), 7u * 2 + 2);
  const std::string report = MarkdownReport(rows, o);
  EXPECT_NE(report.find("| models/llama-3-8b/tp8-bf16 |"), std::string::npos);
  EXPECT_NE(report.find("- **llama-3-8b**: llama-3-8b/tp8-bf16: the fastest"),
            std::string::npos);
  const std::string json = JsonFullReport(rows, o);
  EXPECT_NE(json.find("\"recommendations\""), std::string::npos);
  EXPECT_NE(json.find("\"recv_bytes_per_dst_rank\""), std::string::npos);
}

// Node fan-out (--fanout node): Llama-3-8B trained at TP 2 on node 0 refit
// into two data-parallel replicas at TP 1 on node 1 (2 GPUs a node). The
// plain plan sends the model over the network twice; with fan-out each
// tensor crosses once, into one replica (the leaders alternate by tensor),
// which forwards it to the other over NVLink after the network phase.
TEST(BenchTest, FanoutHalvesTheNetworkBytesOfReplicas) {
  BenchOptions o = Options(0);
  o.cluster.gpus_per_node = 2;
  o.fanout = true;
  const Scenario s{"test", "dp2", "llama-3-8b", "tp=2", "tp=1",
                   2,      2,     false,        "",     ""};
  Result<BenchRow> row = RunScenario(s, o);
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  ASSERT_TRUE(row->fanout.has_value());
  const TrafficStats& plain = row->traffic;
  const FanoutFigures& fan = *row->fanout;
  const uint64_t model = 16060522496;  // 8030261248 BF16 parameters
  EXPECT_EQ(plain.total_bytes, 2 * model);
  EXPECT_EQ(plain.internode_bytes, 2 * model);
  EXPECT_EQ(plain.forwarded_bytes, 0u);
  EXPECT_EQ(fan.traffic.total_bytes, 2 * model);
  EXPECT_EQ(fan.traffic.moved_bytes, 2 * model);
  EXPECT_EQ(fan.traffic.internode_bytes, model);
  EXPECT_EQ(fan.traffic.forwarded_bytes, model);
  EXPECT_EQ(fan.bytes_forwarded, model);
  // Plain: each source rank sends its TP half to both replicas, and rank 0
  // also the 65 norms (532480 B) to both (the least-loaded choice counts in
  // 8 MiB steps); each replica receives the model.
  const uint64_t plain_send = 16061054976;
  EXPECT_EQ(plain.max_send_bytes, plain_send);
  EXPECT_EQ(plain.max_recv_bytes, model);
  EXPECT_EQ(plain.messages, 4u);
  EXPECT_DOUBLE_EQ(row->schedule.t_lb_ms, plain_send / 50e6);
  EXPECT_NEAR(row->schedule.makespan_ms, 326.02109952, 1e-6);
  // Fan-out: the busier leader receives 8.5 GB over the network, then
  // forwards them over NVLink; each replica still receives the model.
  const uint64_t lead = 8500043776;
  EXPECT_EQ(fan.traffic.max_send_bytes, lead);
  EXPECT_EQ(fan.traffic.max_recv_bytes, model);
  EXPECT_EQ(fan.traffic.messages, 6u);  // 4 ops, 2 forwards
  EXPECT_EQ(fan.traffic.pairs, 6u);
  EXPECT_NEAR(fan.schedule.t_lb_ms, lead / 50e6 + lead / 450e6, 1e-9);
  EXPECT_NEAR(fan.schedule.makespan_ms, 193.969861689, 1e-6);
  EXPECT_EQ(fan.schedule.chunks, 960u);

  const std::string table = MarkdownTable({*row}, o);
  EXPECT_NE(table.find("| fan-out internode GB | fan-out forwarded GB | "
                       "fan-out T_LB ms | fan-out modeled ms | speed-up |"),
            std::string::npos);
  EXPECT_NE(table.find("| 16.1 | 16.1 |"), std::string::npos);
  const std::string json = JsonReport({*row});
  EXPECT_NE(json.find("\"fanout\": {"), std::string::npos);
  EXPECT_NE(json.find("\"forwarded_bytes\": 16060522496"), std::string::npos);

  o.fanout = false;  // the plain report has no fan-out block or columns
  Result<BenchRow> off = RunScenario(s, o);
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_FALSE(off->fanout.has_value());
  EXPECT_EQ(MarkdownTable({*off}, o).find("fan-out"), std::string::npos);
  EXPECT_EQ(JsonReport({*off}).find("fanout"), std::string::npos);
}

// --engine-repack: the loader's second pass reads and writes every byte of
// the busiest destination GPU again (Llama-3-8B at tp=1: the whole BF16
// model), at 3.35 TB/s of HBM.
TEST(BenchTest, EngineRepackIsTheDestinationBytesReadAndWrittenAgain) {
  BenchOptions o = Options(0);
  o.engine_repack = true;
  const Scenario s{"test", "dp2", "llama-3-8b", "tp=2", "tp=1",
                   2,      2,     false,        "",     ""};
  Result<BenchRow> row = RunScenario(s, o);
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  const uint64_t model = 16060522496;  // 8030261248 BF16 parameters
  EXPECT_EQ(row->memory.dst_weight_bytes, model);
  const std::string table = MarkdownTable({*row}, o);
  EXPECT_NE(table.find("| re-pack saved GB/GPU | re-pack saved ms | "
                       "re-pack/makespan |"),
            std::string::npos);
  const double ms = 2.0 * model / 3350e6;  // 9.588 ms
  EXPECT_NE(
      table.find(fmt::format(" {:.1f} | {:.1f} | {:.2f} |", 2 * model / 1e9, ms,
                             ms / row->schedule.makespan_ms)),
      std::string::npos)
      << table;
  EXPECT_NE(JsonReport({*row}).find("\"engine_repack_bytes\": 32121044992"),
            std::string::npos);
  o.engine_repack = false;
  EXPECT_EQ(MarkdownTable({*row}, o).find("re-pack"), std::string::npos);
}

TEST(ScaledConfigTest, KeepsCountsAndDivisibility) {
  const std::string cfg = R"({"architectures": ["Qwen3MoeForCausalLM"],
    "hidden_size": 2048, "intermediate_size": 6144,
    "moe_intermediate_size": 768, "num_hidden_layers": 48,
    "num_attention_heads": 32, "num_key_value_heads": 4, "num_experts": 128,
    "vocab_size": 151936})";
  auto scaled = ScaleConfigJson(cfg, 64, 8);
  ASSERT_TRUE(scaled.ok());
  const ModelSpec spec = *ModelSpecFromConfigJson(*scaled);
  EXPECT_EQ(spec.num_layers, 48);
  EXPECT_EQ(spec.num_experts, 128);
  EXPECT_EQ(spec.num_attention_heads, 32);
  EXPECT_EQ(spec.hidden_size, 32);  // 2048 / 64
  EXPECT_EQ(spec.vocab_size, 151936 / 64);
  // 768 / 64 = 12 is not a multiple of 8: divided by 32 instead.
  bool found = false;
  for (const ParamSpec& p : spec.params) {
    if (p.name == "decoder.layers.0.mlp.experts.linear_fc2.weight0") {
      EXPECT_EQ(p.shape, (std::vector<int64_t>{32, 24}));
      found = true;
    }
  }
  EXPECT_TRUE(found);
  EXPECT_FALSE(ScaleConfigJson("[", 2, 1).ok());
}

}  // namespace
}  // namespace refit::bench
