#include "refit/core/planner.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <set>

#include "refit/core/plan_cache.h"
#include "refit/core/shard.h"
#include "refit/core/test_models.h"

namespace refit {
namespace {

using testing::MustSpec;
using testing::MustTopology;
using testing::RandomPlacement;

// ---- A simulated refit: every source element holds its global index. ----

using Buffers = std::map<std::pair<int, uint32_t>, std::vector<uint32_t>>;

// Global linear index of each local element, or UINT32_MAX for padding.
std::vector<uint32_t> Labels(const ParamSpec& p, const ShardGeometry& g) {
  std::vector<uint32_t> out(g.LocalElements(), UINT32_MAX);
  std::vector<int64_t> shape =
      p.shape.empty() ? std::vector<int64_t>{1} : p.shape;
  int64_t inner = 1;
  for (size_t d = g.dim + 1; d < shape.size(); ++d) inner *= shape[d];
  const int64_t outer = g.dim == 0 ? 1 : shape[0];
  for (const Segment& s : g.segments) {
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t i = 0; i < s.length; ++i) {
        for (int64_t k = 0; k < inner; ++k) {
          const int64_t local =
              (o * g.local_shape[g.dim] + s.local_start + i) * inner + k;
          const int64_t global =
              (o * shape[g.dim] + s.global_start + i) * inner + k;
          out[local] = static_cast<uint32_t>(global);
        }
      }
    }
  }
  return out;
}

Buffers SourceBuffers(const ModelSpec& spec, const RefitTopology& t) {
  Buffers b;
  for (int r = 0; r < t.src.world_size(); ++r) {
    for (size_t p = 0; p < spec.params.size(); ++p) {
      const ParamSpec& ps = spec.params[p];
      if (!HoldsParam(ps, p, t.src, r)) continue;
      b[{r + t.src_rank_offset, p}] =
          Labels(ps, ShardOf(ps, t.src, ShardCoord(ps, t.src, r)));
    }
  }
  return b;
}

// Applies `ops` reading from `src` (the source shards, or for forwards the
// destination shards); returns false on any read or write outside a shard.
bool ApplyOps(const std::vector<TransferOp>& ops, const Buffers& src,
              Buffers& dst,
              std::map<std::pair<int, uint32_t>, std::vector<int>>& writes) {
  for (const TransferOp& op : ops) {
    for (const Piece& pc : op.pieces) {
      auto s = src.find({op.src_rank, pc.src_param});
      auto d = dst.find({op.dst_rank, pc.dst_param});
      if (s == src.end() || d == dst.end()) return false;  // not owned
      auto& w = writes[{op.dst_rank, pc.dst_param}];
      for (uint64_t i = 0; i < pc.nruns; ++i) {
        const uint64_t so = pc.src_offset + i * pc.src_stride;
        const uint64_t dof = pc.dst_offset + i * pc.dst_stride;
        if ((so + pc.run_bytes) / 4 > s->second.size()) return false;
        if ((dof + pc.run_bytes) / 4 > d->second.size()) return false;
        std::memcpy(d->second.data() + dof / 4, s->second.data() + so / 4,
                    pc.run_bytes);
        for (uint64_t e = dof / 4; e < (dof + pc.run_bytes) / 4; ++e) ++w[e];
      }
    }
  }
  return true;
}

// Applies the plan's ops, then its forwards (from the destination shards as
// the ops left them); returns false on any access outside a shard.
bool Apply(const ReshardPlan& plan, const Buffers& src, Buffers& dst,
           std::map<std::pair<int, uint32_t>, std::vector<int>>& writes) {
  if (!ApplyOps(plan.ops, src, dst, writes)) return false;
  const Buffers after_ops = dst;
  return ApplyOps(plan.forwards, after_ops, dst, writes);
}

// Checks every destination element is written exactly once with its own
// global index, padding never written.
void ExpectExactRefit(const ModelSpec& spec, const RefitTopology& t,
                      const ReshardPlan& plan) {
  const Buffers src = SourceBuffers(spec, t);
  Buffers dst;
  std::map<std::pair<int, uint32_t>, std::vector<int>> writes;
  std::map<std::pair<int, uint32_t>, std::vector<uint32_t>> want;
  for (int r = 0; r < t.dst.world_size(); ++r) {
    for (size_t p = 0; p < spec.params.size(); ++p) {
      const ParamSpec& ps = spec.params[p];
      if (!HoldsParam(ps, p, t.dst, r)) continue;
      const auto key =
          std::pair(r + t.dst_rank_offset, static_cast<uint32_t>(p));
      want[key] = Labels(ps, ShardOf(ps, t.dst, ShardCoord(ps, t.dst, r)));
      dst[key].assign(want[key].size(), UINT32_MAX);
      writes[key].assign(want[key].size(), 0);
    }
  }
  ASSERT_TRUE(Apply(plan, src, dst, writes)) << "piece outside a held shard";
  for (const auto& [key, labels] : want) {
    const std::vector<int>& w = writes[key];
    for (size_t e = 0; e < labels.size(); ++e) {
      const int expect_writes = labels[e] == UINT32_MAX ? 0 : 1;
      ASSERT_EQ(w[e], expect_writes) << spec.params[key.second].name << " rank "
                                     << key.first << " el " << e;
      ASSERT_EQ(dst[key][e], labels[e]) << spec.params[key.second].name;
    }
  }
  EXPECT_EQ(plan.dst_tensors, want.size());
}

// ---- Random models and layouts. ----

std::string RandomConfig(std::mt19937& rng) {
  auto pick = [&](std::vector<int> v) { return v[rng() % v.size()]; };
  const int ng = pick({1, 2, 4});
  const int np = ng * pick({1, 2});
  const int experts = pick({0, 2, 4, 8});
  const int layers = pick({1, 2, 3, 4});
  const bool tied = rng() % 3 == 0;
  return std::string(R"({"architectures": [")") +
         (experts ? "Qwen3MoeForCausalLM" : "LlamaForCausalLM") +
         R"("], "hidden_size": 16, "head_dim": 4,
    "num_attention_heads": )" +
         std::to_string(np) + R"(, "num_key_value_heads": )" +
         std::to_string(ng) + R"(, "intermediate_size": )" +
         std::to_string(pick({8, 16, 24})) + R"(, "moe_intermediate_size": )" +
         std::to_string(pick({4, 8})) + R"(, "num_hidden_layers": )" +
         std::to_string(layers) + R"(, "num_experts": )" +
         std::to_string(experts) + R"(, "vocab_size": )" +
         std::to_string(50 + rng() % 300) + R"(, "tie_word_embeddings": )" +
         (tied ? "true" : "false") + R"(, "torch_dtype": "float32"})";
}

std::optional<Layout> RandomLayout(std::mt19937& rng, const ModelSpec& spec,
                                   int world) {
  auto pick = [&](std::vector<int> v) { return v[rng() % v.size()]; };
  for (int attempt = 0; attempt < 200; ++attempt) {
    ParallelConfig c;
    c.tp = pick({1, 2, 4});
    c.pp = pick({1, 1, 2, 3});
    c.ep = pick({1, 2, 4});
    c.etp = pick({0, 1, 2});
    c.cp = pick({1, 1, 2});
    if (c.pp > 1 && rng() % 2) c.pp_first = rng() % (spec.num_layers + 1);
    Result<Layout> l = Layout::Create(c, world, spec);
    if (l.ok()) return *l;
  }
  return std::nullopt;
}

// Equal ops, pieces byte for byte.
void ExpectSameOps(const std::vector<const TransferOp*>& want,
                   const std::vector<TransferOp>& got) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const TransferOp &a = got[i], &b = *want[i];
    ASSERT_EQ(std::tie(a.src_rank, a.dst_rank, a.task_id, a.bytes),
              std::tie(b.src_rank, b.dst_rank, b.task_id, b.bytes));
    ASSERT_EQ(a.pieces.size(), b.pieces.size());
    ASSERT_EQ(0, std::memcmp(a.pieces.data(), b.pieces.data(),
                             a.pieces.size() * sizeof(Piece)));
  }
}

std::vector<const TransferOp*> OpsOf(const std::vector<TransferOp>& ops,
                                     int rank) {
  std::vector<const TransferOp*> out;
  for (const TransferOp& op : ops) {
    if (op.src_rank == rank || op.dst_rank == rank) out.push_back(&op);
  }
  return out;
}

// A rank's own plan holds exactly the full plan's ops (and forwards) of that
// rank.
void ExpectRankPlansMatch(const ModelSpec& spec, const RefitTopology& t,
                          const ReshardPlan& full, int rank,
                          const PlanOptions& options = {}) {
  SCOPED_TRACE("rank " + std::to_string(rank));
  const ReshardPlan mine = *BuildRankReshardPlan(spec, t, rank, options);
  ExpectSameOps(OpsOf(full.ops, rank), mine.ops);
  ExpectSameOps(OpsOf(full.forwards, rank), mine.forwards);
}

// A random topology over a random model, or nullopt when the draw does not
// divide.
struct RandomCase {
  ModelSpec spec;
  RefitTopology topo;
  bool collocated = false;
};

std::optional<RandomCase> DrawCase(std::mt19937& rng) {
  const ModelSpec spec = MustSpec(RandomConfig(rng));
  const bool collocated = rng() % 2;
  const int sw = 1 + rng() % 8;
  const int dw = collocated ? sw : 1 + rng() % 8;
  auto src = RandomLayout(rng, spec, sw);
  auto dst = RandomLayout(rng, spec, dw);
  if (!src || !dst) return std::nullopt;
  Result<RefitTopology> topo = collocated
                                   ? MakeTopology(*src, *dst, 0, 0, sw)
                                   : MakeTopology(*src, *dst, 0, sw, sw + dw);
  if (!topo.ok()) return std::nullopt;
  return RandomCase{spec, *topo, collocated};
}

TEST(PlannerPropertyTest, RandomLayoutsRefitExactlyOnce) {
  std::mt19937 rng(20261122);
  int cases = 0;
  for (int trial = 0; trial < 400 && cases < 150; ++trial) {
    std::optional<RandomCase> c = DrawCase(rng);
    if (!c) continue;
    const ModelSpec& spec = c->spec;
    const RefitTopology* topo = &c->topo;
    const bool collocated = c->collocated;
    Result<ReshardPlan> plan = BuildReshardPlan(spec, *topo);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    SCOPED_TRACE(topo->src.config().ToString() + " -> " +
                 topo->dst.config().ToString() +
                 (collocated ? " collocated" : " non-collocated"));
    ExpectExactRefit(spec, *topo, *plan);
    // Bytes sent = bytes received, per rank plans included.
    uint64_t sent = 0, received = 0, local = 0;
    for (int r = 0; r < topo->world_size; ++r) {
      const RankPlan rp = ExtractRankPlan(*plan, r);
      for (uint32_t i : rp.sends) sent += plan->ops[i].bytes;
      for (uint32_t i : rp.recvs) received += plan->ops[i].bytes;
      for (uint32_t i : rp.local_copies) local += plan->ops[i].bytes;
    }
    EXPECT_EQ(sent, plan->bytes_remote);
    EXPECT_EQ(received, plan->bytes_remote);
    EXPECT_EQ(local, plan->bytes_local);
    if (!collocated) {
      EXPECT_EQ(local, 0u);
    }
    // Deterministic: a second build is identical.
    const ReshardPlan again = *BuildReshardPlan(spec, *topo);
    ASSERT_EQ(again.ops.size(), plan->ops.size());
    for (size_t i = 0; i < again.ops.size(); ++i) {
      const TransferOp &a = again.ops[i], &b = plan->ops[i];
      ASSERT_EQ(std::tie(a.src_rank, a.dst_rank, a.task_id, a.bytes),
                std::tie(b.src_rank, b.dst_rank, b.task_id, b.bytes));
      ASSERT_EQ(a.pieces.size(), b.pieces.size());
      ASSERT_EQ(0, std::memcmp(a.pieces.data(), b.pieces.data(),
                               a.pieces.size() * sizeof(Piece)));
    }
    ExpectRankPlansMatch(spec, *topo, *plan, rng() % topo->world_size);
    ++cases;
  }
  EXPECT_GE(cases, 100);
}

// An EPLB placement change between refits (RebuildReshardPlan): the rebuild
// plans only the routed experts whose EP ranks moved, keeps every other
// piece as it was, refits every destination byte exactly once, and each
// rank's own rebuild holds exactly its ops of the whole one.
TEST(PlannerPropertyTest, PlacementChangeRebuildsOnlyTheMovedExperts) {
  std::mt19937 rng(20261205);
  int cases = 0, partial = 0;
  for (int trial = 0; trial < 600 && cases < 60; ++trial) {
    std::optional<RandomCase> c = DrawCase(rng);
    if (!c || c->spec.num_experts == 0 || c->topo.dst.ep() < 2) continue;
    const ModelSpec& spec = c->spec;
    std::optional<RefitTopology> with[2];
    for (auto& t : with) {
      ParallelConfig d = c->topo.dst.config();
      d.expert_placement = RandomPlacement(rng, spec.num_experts, d.ep);
      Result<Layout> l = Layout::Create(d, c->topo.dst.world_size(), spec);
      if (!l.ok()) break;
      Result<RefitTopology> topo =
          MakeTopology(c->topo.src, *l, c->topo.src_rank_offset,
                       c->topo.dst_rank_offset, c->topo.world_size);
      if (topo.ok()) t = *topo;
    }
    if (!with[0] || !with[1]) continue;
    SCOPED_TRACE(with[0]->dst.config().ToString() + " -> " +
                 with[1]->dst.config().ToString());
    const ReshardPlan before = *BuildReshardPlan(spec, *with[0]);
    RebuildStats stats;
    Result<ReshardPlan> after =
        RebuildReshardPlan(spec, *with[1], -1, *with[0], before, {}, &stats);
    ASSERT_TRUE(after.ok()) << after.status().ToString();
    ExpectExactRefit(spec, *with[1], *after);
    uint64_t moved = 0;
    std::vector<bool> is_moved(spec.params.size(), false);
    for (size_t p = 0; p < spec.params.size(); ++p) {
      const int e = spec.params[p].expert;
      is_moved[p] = e >= 0 && with[0]->dst.ExpertEpRanks(e) !=
                                  with[1]->dst.ExpertEpRanks(e);
      moved += is_moved[p];
    }
    EXPECT_EQ(stats.params_replanned, moved);
    EXPECT_EQ(stats.params_kept + moved, spec.params.size());
    partial += moved > 0 && stats.params_kept > 0;
    // Every kept piece is where it was.
    std::map<std::pair<int, int>, const TransferOp*> ops;
    for (const TransferOp& op : after->ops) {
      ops[{op.src_rank, op.dst_rank}] = &op;
    }
    for (const TransferOp& op : before.ops) {
      for (const Piece& pc : op.pieces) {
        if (is_moved[pc.dst_param]) continue;
        auto it = ops.find({op.src_rank, op.dst_rank});
        ASSERT_NE(it, ops.end());
        const auto& got = it->second->pieces;
        EXPECT_TRUE(std::any_of(got.begin(), got.end(), [&](const Piece& g) {
          return std::memcmp(&g, &pc, sizeof(Piece)) == 0;
        }));
      }
    }
    const int r = rng() % c->topo.world_size;
    const ReshardPlan mine_before = *BuildRankReshardPlan(spec, *with[0], r);
    Result<ReshardPlan> mine =
        RebuildReshardPlan(spec, *with[1], r, *with[0], mine_before);
    ASSERT_TRUE(mine.ok()) << mine.status().ToString();
    ExpectSameOps(OpsOf(after->ops, r), mine->ops);
    EXPECT_EQ(mine->dst_tensors, after->dst_tensors);
    ++cases;
  }
  EXPECT_GE(cases, 40);
  EXPECT_GE(partial, 20);
}

// A rebuild refuses topologies that differ in more than the placement.
TEST(PlannerTest, RebuildNeedsTheSameLayoutsButThePlacement) {
  const ModelSpec spec = MustSpec(testing::Qwen3Config(2, 4));
  const RefitTopology a =
      MustTopology(spec, "tp=2,ep=2", 4, "tp=1,ep=4", 4, true);
  const RefitTopology b =
      MustTopology(spec, "tp=2,ep=2", 4, "tp=2,ep=2", 4, true);
  const ReshardPlan plan = *BuildReshardPlan(spec, a);
  Result<ReshardPlan> r = RebuildReshardPlan(spec, b, -1, a, plan);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("differ in more than the destination's "
                                      "expert placement"),
            std::string::npos)
      << r.status().ToString();
}

uint64_t CrossNodeBytes(const std::vector<TransferOp>& ops, int per_node) {
  uint64_t n = 0;
  for (const TransferOp& op : ops) {
    if (op.src_rank / per_node != op.dst_rank / per_node) n += op.bytes;
  }
  return n;
}

// Node fan-out on random layouts and node sizes: still every destination
// byte exactly once (forwards applied after the ops, from the leaders'
// destination shards); forwards stay inside a node, read shards their
// sender does not itself get forwarded, and never raise the bytes that
// cross nodes; rank plans and a second build agree.
TEST(PlannerPropertyTest, NodeFanoutRefitsExactlyOnceWithFewerNetworkBytes) {
  std::mt19937 rng(20261205);
  int cases = 0, forwarding = 0;
  for (int trial = 0; trial < 600 && cases < 150; ++trial) {
    std::optional<RandomCase> c = DrawCase(rng);
    if (!c) continue;
    PlanOptions fan;
    fan.fanout_gpus_per_node = 1 + static_cast<int>(rng() % 4);
    const int per_node = fan.fanout_gpus_per_node;
    SCOPED_TRACE(c->topo.src.config().ToString() + " -> " +
                 c->topo.dst.config().ToString() +
                 (c->collocated ? " collocated" : " non-collocated") +
                 ", gpus/node " + std::to_string(per_node));
    const ReshardPlan plain = *BuildReshardPlan(c->spec, c->topo);
    Result<ReshardPlan> plan = BuildReshardPlan(c->spec, c->topo, fan);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    ExpectExactRefit(c->spec, c->topo, *plan);
    std::set<std::pair<int, uint32_t>> leads, follows;
    uint64_t forwarded = 0;
    for (const TransferOp& op : plan->forwards) {
      ASSERT_EQ(op.src_rank / per_node, op.dst_rank / per_node);
      ASSERT_NE(op.src_rank, op.dst_rank);
      ASSERT_EQ(op.task_id,
                static_cast<uint64_t>(plan->world_size) * plan->world_size +
                    op.src_rank * plan->world_size + op.dst_rank);
      forwarded += op.bytes;
      for (const Piece& pc : op.pieces) {
        ASSERT_EQ(pc.src_param, pc.dst_param);
        ASSERT_EQ(pc.src_offset, pc.dst_offset);
        leads.insert({op.src_rank, pc.dst_param});
        follows.insert({op.dst_rank, pc.dst_param});
      }
    }
    for (const auto& lead : leads) ASSERT_FALSE(follows.contains(lead));
    EXPECT_EQ(forwarded, plan->bytes_forwarded);
    EXPECT_EQ(plan->forward_phase, !plan->forwards.empty());
    for (int r = 0; r < c->topo.world_size; ++r) {  // every rank knows
      ASSERT_EQ(BuildRankReshardPlan(c->spec, c->topo, r, fan)->forward_phase,
                plan->forward_phase);
    }
    EXPECT_LE(CrossNodeBytes(plan->ops, per_node),
              CrossNodeBytes(plain.ops, per_node));
    const ReshardPlan again = *BuildReshardPlan(c->spec, c->topo, fan);
    std::vector<const TransferOp*> all;
    for (const TransferOp& op : plan->forwards) all.push_back(&op);
    ExpectSameOps(all, again.forwards);
    ExpectRankPlansMatch(c->spec, c->topo, *plan, rng() % c->topo.world_size,
                         fan);
    forwarding += plan->forwards.empty() ? 0 : 1;
    ++cases;
  }
  EXPECT_GE(cases, 100);
  EXPECT_GE(forwarding, 20);  // the draws do exercise forwards
}

// Two data-parallel replicas of a dense model on one node, fed from
// another node: one of them receives each tensor over the network and
// forwards it; half the network bytes of the plain plan.
TEST(PlannerTest, NodeFanoutHalvesNetworkBytesOfReplicas) {
  const ModelSpec spec = MustSpec(testing::Qwen3Config(2, 0));
  const RefitTopology t = MustTopology(spec, "tp=2", 2, "tp=1", 2, false);
  PlanOptions fan;
  fan.fanout_gpus_per_node = 2;
  const ReshardPlan plain = *BuildReshardPlan(spec, t);
  const ReshardPlan plan = *BuildReshardPlan(spec, t, fan);
  EXPECT_EQ(CrossNodeBytes(plan.ops, 2) * 2, CrossNodeBytes(plain.ops, 2));
  EXPECT_EQ(plan.bytes_forwarded, plain.bytes_remote / 2);
  EXPECT_EQ(plan.bytes_remote + plan.bytes_forwarded, plain.bytes_remote);
  ASSERT_EQ(plan.forwards.size(), 2u);  // the leaders alternate by tensor
  EXPECT_EQ(plan.forwards[0].src_rank, 2);
  EXPECT_EQ(plan.forwards[1].src_rank, 3);
}

TEST(PlannerTest, NodeFanoutRejectsBadOptions) {
  const ModelSpec spec = MustSpec(testing::Qwen3Config(2, 0));
  const RefitTopology t = MustTopology(spec, "tp=2", 2, "tp=1", 2, false);
  PlanOptions bad;
  bad.fanout_gpus_per_node = -1;
  EXPECT_EQ(BuildReshardPlan(spec, t, bad).status().code(),
            StatusCode::kInvalidArgument);
  bad.fanout_gpus_per_node = 2;
  bad.no_fanout.assign(1, 0);
  EXPECT_EQ(BuildReshardPlan(spec, t, bad).status().code(),
            StatusCode::kInvalidArgument);
  bad.no_fanout.assign(spec.params.size(), 1);  // every tensor kept out
  EXPECT_TRUE(BuildReshardPlan(spec, t, bad)->forwards.empty());
}

// ---- Exact cases. ----

TEST(PlannerTest, SameLayoutCollocatedIsAllLocal) {
  const ModelSpec spec = MustSpec(testing::Qwen3Config(2, 4));
  const RefitTopology t =
      MustTopology(spec, "tp=2,ep=2", 4, "tp=2,ep=2", 4, true);
  const ReshardPlan plan = *BuildReshardPlan(spec, t);
  EXPECT_EQ(plan.bytes_remote, 0u);
  EXPECT_EQ(plan.messages, 0u);
  EXPECT_EQ(plan.ops.size(), 4u);  // one local op per rank
}

// One source replica per DP rank: four senders each serve one quarter, to
// within one balance step (model bytes / (16 x 8 ranks)) and one piece.
TEST(PlannerTest, ReplicaChoiceBalancesSenders) {
  const ModelSpec spec = MustSpec(testing::Qwen3Config(4, 0));
  const RefitTopology t = MustTopology(spec, "tp=1", 4, "tp=1", 4, false);
  const ReshardPlan plan = *BuildReshardPlan(spec, t);
  std::vector<uint64_t> load(8, 0);
  uint64_t biggest = 0;
  for (const TransferOp& op : plan.ops) {
    load[op.src_rank] += op.bytes;
    for (const Piece& p : op.pieces) biggest = std::max(biggest, p.bytes());
  }
  const auto [lo, hi] = std::minmax_element(load.begin(), load.begin() + 4);
  const uint64_t step = spec.TotalParams() * 4 / (16 * 8);
  EXPECT_LE(*hi - *lo, biggest + step);
  EXPECT_LE(*hi - *lo, plan.bytes_remote / 4 / 10);  // within 10% of a share
  EXPECT_EQ(plan.bytes_remote, 4 * spec.TotalParams() * 4);
}

TEST(PlannerTest, TpTwoToThreeSplitsRowsAcrossSources) {
  // 12 heads so that TP 2 -> TP 3 divides; o_proj columns 96 = 12 heads x 8.
  std::string cfg = testing::Qwen3Config(1, 0);
  cfg.replace(cfg.find("\"num_attention_heads\": 8"), 24,
              "\"num_attention_heads\": 12");
  cfg.replace(cfg.find("\"num_key_value_heads\": 4"), 24,
              "\"num_key_value_heads\": 6");
  const ModelSpec spec = MustSpec(cfg);
  const RefitTopology t = MustTopology(spec, "tp=2", 6, "tp=3", 6, true);
  const ReshardPlan plan = *BuildReshardPlan(spec, t);
  ExpectExactRefit(spec, t, plan);
}

TEST(PlanCacheTest, KeyHasOffsetsAndFingerprint) {
  const ModelSpec spec = MustSpec(testing::Qwen3Config(2, 4));
  const RefitTopology a =
      MustTopology(spec, "tp=2,ep=2", 4, "tp=1,ep=4", 4, true);
  const RefitTopology b =
      MustTopology(spec, "tp=2,ep=2", 4, "tp=1,ep=4", 4, false);
  PlanCache cache;
  auto p1 = cache.GetOrBuild(spec, a);
  auto p2 = cache.GetOrBuild(spec, a);
  ASSERT_TRUE(p1.ok() && p2.ok());
  EXPECT_EQ(p1->get(), p2->get());
  EXPECT_EQ(cache.hits(), 1u);
  ASSERT_TRUE(cache.GetOrBuild(spec, b).ok());
  EXPECT_EQ(cache.size(), 2u);
  ModelSpec other = spec;
  other.params[1].name += "_renamed";
  EXPECT_NE(SpecFingerprint(other), SpecFingerprint(spec));
  EXPECT_FALSE(MakePlanCacheKey(other, a) == MakePlanCacheKey(spec, a));
  EXPECT_FALSE(MakePlanCacheKey(spec, a, 1) == MakePlanCacheKey(spec, a, 0));
}

}  // namespace
}  // namespace refit
