// Refits into several destination layouts in one pass (include/refit/swap.h
// DestinationModel): a DeepSeek-V3-style main model beside its MTP draft
// (part=mtp) on the same ranks, and prefill and decode pools on different
// ranks, each destination checked byte for byte against the checkpoint, and
// the bytes moved against the same destinations refit one at a time.
#include <gtest/gtest.h>
#include <unistd.h>

#include <deque>
#include <filesystem>
#include <map>
#include <memory>

#include "refit/checkpoint/checkpoint_shards.h"
#include "refit/checkpoint/synthetic.h"
#include "refit/exec/session/tensor_binding.h"
#include "refit/local_world.h"
#include "refit/swap.h"
#include "refit/verify/dst_reference.h"

namespace refit::exec {
namespace {

namespace fs = std::filesystem;

// DeepSeek-V3's structure at toy widths: MLA with q_lora, one dense layer,
// one MoE layer of 8 routed experts and a shared expert, one MTP layer.
constexpr char kConfig[] = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
  "vocab_size": 500, "hidden_size": 64, "intermediate_size": 96,
  "moe_intermediate_size": 32, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 4,
  "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2,
  "first_k_dense_replace": 1, "moe_layer_freq": 1, "n_group": 1,
  "topk_group": 1, "q_lora_rank": 32, "kv_lora_rank": 16,
  "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
  "tie_word_embeddings": false, "num_nextn_predict_layers": 1,
  "torch_dtype": "bfloat16"})";

// One destination model of one rank: its tensors and their views.
struct DstSide {
  std::unique_ptr<DstTensors> tensors;
  ShardedModel model;
};

// One destination of the refit.
struct Destination {
  const char* layout;
  int world;
  int offset;
  std::optional<Layout> bound;
  FormatPlan formats;
  ModelSpec dst_spec;
  std::map<int, DstSide> ranks;  // group rank -> its model
};

class MultiDestinationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto spec = ModelSpecFromConfigJson(kConfig, {.mtp = true});
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    spec_ = new std::shared_ptr<ModelSpec>(
        std::make_shared<ModelSpec>(std::move(spec).value()));
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("refit_multi_dst_" + std::to_string(::getpid())));
    ASSERT_TRUE(
        WriteSyntheticCheckpoint(**spec_, kConfig, dir_->string(), 7).ok());
    auto ckpt = io::Checkpoint::Open(dir_->string());
    ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    ckpt_ = new io::Checkpoint(std::move(ckpt).value());
    auto bound = BindCheckpoint(**spec_, *ckpt_);
    ASSERT_TRUE(bound.ok()) << bound.status().ToString();
    bound_ = new BoundCheckpoint(std::move(bound).value());
  }
  static void TearDownTestSuite() {
    delete bound_;
    delete ckpt_;
    fs::remove_all(*dir_);
    delete dir_;
    delete spec_;
  }

  const ModelSpec& spec() const { return **spec_; }

  // Sources: `layout` over group ranks [0, world).
  void Sources(const char* layout, int world) {
    auto l = Layout::Create(*ParseParallelConfig(layout), world, spec());
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    src_.clear();
    src_models_.clear();
    for (int r = 0; r < world; ++r) {
      src_.push_back(
          std::make_unique<ShardArena>(ShardArena::ForRank(spec(), *l, r)));
      FillArena(spec(), *bound_, *src_.back());
      src_models_[r] =
          ViewsOf(*spec_, spec(), IdentityFormats(spec()), *l, r, *src_.back(),
                  nullptr, SideBinding::Side::kSource);
    }
  }

  // A destination of `layout` over group ranks [offset, +world), its tensors
  // filled with 0xAB.
  Destination& AddDestination(const char* layout, int world, int offset) {
    Destination& d = dsts_.emplace_back();
    d.layout = layout;
    d.world = world;
    d.offset = offset;
    auto l = Layout::Create(*ParseParallelConfig(layout), world, spec());
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    d.bound.emplace(*l);
    d.formats = IdentityFormats(spec());
    auto src = Layout::Create(*ParseParallelConfig(src_layout_),
                              static_cast<int>(src_.size()), spec());
    auto topo = MakeTopology(*src, *l, 0, offset, world_size_);
    EXPECT_TRUE(topo.ok()) << topo.status().ToString();
    // vLLM routers in BF16 (EngineRouterDType), as the engine holds them.
    if (transform_ || EngineLayoutCasts(spec(), *topo)) {
      auto f = ResolveFormats(spec(), *topo,
                              transform_.value_or(PrecisionOptions{}));
      EXPECT_TRUE(f.ok()) << f.status().ToString();
      d.formats = *f;
    }
    d.dst_spec = DestinationSpec(spec(), d.formats);
    for (int r = 0; r < world; ++r) {
      DstSide& side = d.ranks[r + offset];
      side.tensors = std::make_unique<DstTensors>(
          DstTensors::ForRank(d.dst_spec, d.formats, *l, r));
      Fill(*side.tensors);
      side.model = ViewsOf(*spec_, d.dst_spec, d.formats, *l, r,
                           side.tensors->data(), &side.tensors->scale_tensors(),
                           SideBinding::Side::kDestination);
    }
    return d;
  }

  static void Fill(const DstTensors& t) {
    for (uint32_t p : t.data().params()) {
      std::fill_n(t.data().data(p), t.data().shard_bytes(p), std::byte{0xAB});
      if (std::byte* sc = t.scales(p)) {
        std::fill_n(sc, t.scale_layout(p).bytes, std::byte{0xAB});
      }
    }
  }

  // One refit of every rank into the destinations `which` (indices into
  // dsts_; all when empty) on a fresh group; every rank's report.
  std::vector<SwapReport> Refit(std::vector<size_t> which = {}) {
    if (which.empty()) {
      for (size_t i = 0; i < dsts_.size(); ++i) which.push_back(i);
    }
    for (size_t i : which) {
      for (auto& [rank, side] : dsts_[i].ranks) Fill(*side.tensors);
    }
    ClearPlanCache();
    LocalWorld world(world_size_);
    std::vector<SwapReport> reports(world_size_);
    SwapOptions options;
    options.transform = transform_;
    options.verify = VerifyMode::kNone;
    (void)world.ForEachRank([&](int r) -> Status {
      std::vector<DestinationModel> mine;
      for (size_t i : which) {
        auto it = dsts_[i].ranks.find(r);
        if (it != dsts_[i].ranks.end()) {
          mine.push_back({&it->second.model, dsts_[i].offset});
        }
      }
      auto s = src_models_.find(r);
      const ShardedModel* src = s == src_models_.end() ? nullptr : &s->second;
      Result<SwapReport> rep =
          SwapModelWeights(src, mine, world.rank(r), options);
      if (rep.ok()) reports[r] = *rep;
      EXPECT_TRUE(rep.ok()) << rep.status().ToString();
      if (rep.ok()) EXPECT_EQ(world.rank(r).weight_version(), 1u);
      return rep.status();
    });
    return reports;
  }

  // Destination shards of `d` that differ from the checkpoint.
  int Wrong(const Destination& d) const {
    int wrong = 0;
    for (const auto& [rank, side] : d.ranks) {
      std::vector<bool> bad(spec().params.size(), false);
      MarkWrongDstShards(spec(), d.formats, *bound_, *side.tensors, bad);
      wrong += std::count(bad.begin(), bad.end(), true);
    }
    return wrong;
  }

  // Wrong shards over every destination.
  int WrongInAll() const {
    int wrong = 0;
    for (const Destination& d : dsts_) wrong += Wrong(d);
    return wrong;
  }

  static uint64_t Sum(const std::vector<SwapReport>& reports,
                      uint64_t SwapReport::*field) {
    uint64_t n = 0;
    for (const SwapReport& r : reports) n += r.*field;
    return n;
  }

  static std::shared_ptr<ModelSpec>* spec_;
  static fs::path* dir_;
  static io::Checkpoint* ckpt_;
  static BoundCheckpoint* bound_;
  int world_size_ = 0;
  const char* src_layout_ = "";
  std::optional<PrecisionOptions> transform_;
  std::vector<std::unique_ptr<ShardArena>> src_;
  std::map<int, ShardedModel> src_models_;
  std::deque<Destination> dsts_;
};

std::shared_ptr<ModelSpec>* MultiDestinationTest::spec_ = nullptr;
fs::path* MultiDestinationTest::dir_ = nullptr;
io::Checkpoint* MultiDestinationTest::ckpt_ = nullptr;
BoundCheckpoint* MultiDestinationTest::bound_ = nullptr;

// The draft holds the MTP layer, the embedding and the output layer, and
// nothing of the main decoder.
TEST_F(MultiDestinationTest, MtpDraftHoldsTheMtpHeadOnly) {
  ParallelConfig draft = *ParseParallelConfig("tp=2,family=vllm,part=mtp");
  EXPECT_EQ(draft.ToString(), "tp=2,pp=1,ep=1,etp=2,family=vllm,part=mtp");
  auto shapes = ShardShapes(spec(), draft, 0, 2);
  ASSERT_TRUE(shapes.ok()) << shapes.status().ToString();
  bool embedding = false, head = false, mtp = false;
  for (const ShardShape& s : *shapes) {
    EXPECT_EQ(s.name.find("model.layers.0."), std::string::npos) << s.name;
    EXPECT_NE(s.name, "model.norm.weight");
    embedding |= s.name == "model.embed_tokens.weight";
    head |= s.name == "lm_head.weight";
    mtp |= s.name.starts_with("model.layers.2.");
  }
  EXPECT_TRUE(embedding && head && mtp);
  ModelSpec plain = spec();
  plain.mtp_layers = 0;
  EXPECT_EQ(Layout::Create(draft, 2, plain).status().message(),
            "layout tp=2,pp=1,ep=1,etp=2,family=vllm,part=mtp: part=mtp needs "
            "a model with MTP layers (num_nextn_predict_layers, read with "
            "ModelSpecOptions::mtp / --mtp)");
  EXPECT_FALSE(ParseParallelConfig("tp=2,part=draft").ok());
}

// Main model and MTP draft on the same two ranks, both vLLM at TP 2: one
// pass, both bit-exact; the embedding and lm_head shards the two hold alike
// travel once and are copied on the rank, so the pass moves exactly the
// bytes of the two refits alone minus the copied ones.
TEST_F(MultiDestinationTest, MainAndDraftInOnePassReadEachSourceByteOnce) {
  world_size_ = 2;
  src_layout_ = "tp=1,ep=2";
  Sources(src_layout_, 2);
  AddDestination("tp=2,ep=2,etp=1,family=vllm,part=main", 2, 0);
  AddDestination("tp=2,ep=1,family=vllm,part=mtp", 2, 0);
  const auto both = Refit();
  EXPECT_EQ(WrongInAll(), 0);
  const auto main = Refit({0});
  EXPECT_EQ(Wrong(dsts_[0]), 0);
  const auto draft = Refit({1});
  EXPECT_EQ(Wrong(dsts_[1]), 0);
  const uint64_t copied = Sum(both, &SwapReport::bytes_copied);
  // The embedding and lm_head: vocab x hidden BF16 (without vLLM's padding
  // rows, which a refit leaves as they are).
  EXPECT_EQ(copied, 2 * 500 * 64 * 2);
  EXPECT_EQ(Sum(both, &SwapReport::bytes_received) +
                Sum(both, &SwapReport::bytes_local) + copied,
            Sum(main, &SwapReport::bytes_received) +
                Sum(main, &SwapReport::bytes_local) +
                Sum(draft, &SwapReport::bytes_received) +
                Sum(draft, &SwapReport::bytes_local));
  EXPECT_EQ(Sum(both, &SwapReport::bytes_sent) +
                Sum(both, &SwapReport::bytes_local) + copied,
            Sum(main, &SwapReport::bytes_sent) +
                Sum(main, &SwapReport::bytes_local) +
                Sum(draft, &SwapReport::bytes_sent) +
                Sum(draft, &SwapReport::bytes_local));
}

// A draft at another TP shares no shard with the main model: nothing is
// copied, both are bit-exact; block FP8 destinations too.
TEST_F(MultiDestinationTest, DraftAtItsOwnTpAndFp8) {
  world_size_ = 2;
  src_layout_ = "tp=2,ep=2,etp=1";
  Sources(src_layout_, 2);
  AddDestination("tp=2,ep=2,etp=1,family=sglang,part=main", 2, 0);
  AddDestination("tp=1,family=sglang,part=mtp", 2, 0);
  const auto plain = Refit();
  EXPECT_EQ(Sum(plain, &SwapReport::bytes_copied), 0u);
  EXPECT_EQ(WrongInAll(), 0);
  dsts_.clear();
  PrecisionOptions fp8;
  ASSERT_TRUE(ApplyDstDType("fp8-block", fp8).ok());
  fp8.fp8.block = {16, 16};
  transform_ = fp8;
  AddDestination("tp=2,ep=2,etp=1,family=vllm,part=main", 2, 0);
  AddDestination("tp=2,family=vllm,part=mtp", 2, 0);
  const auto quantised = Refit();
  EXPECT_GT(Sum(quantised, &SwapReport::bytes_copied), 0u);
  EXPECT_EQ(WrongInAll(), 0);
}

// Prefill (TP 2) and decode (EP 4) pools on their own ranks, non-collocated
// with the trainer: one pass, one weight version, both bit-exact, and the
// same bytes as the two refits alone.
TEST_F(MultiDestinationTest, PrefillAndDecodePoolsInOnePass) {
  world_size_ = 8;
  src_layout_ = "tp=2";
  Sources(src_layout_, 2);
  AddDestination("tp=2,ep=2,etp=1,family=vllm", 2, 2);
  AddDestination("tp=1,ep=4,family=vllm", 4, 4);
  const auto both = Refit();
  EXPECT_EQ(WrongInAll(), 0);
  const auto prefill = Refit({0});
  const auto decode = Refit({1});
  EXPECT_EQ(Sum(both, &SwapReport::bytes_copied), 0u);
  EXPECT_EQ(Sum(both, &SwapReport::bytes_received),
            Sum(prefill, &SwapReport::bytes_received) +
                Sum(decode, &SwapReport::bytes_received));
  EXPECT_EQ(Sum(both, &SwapReport::messages_sent),
            Sum(prefill, &SwapReport::messages_sent) +
                Sum(decode, &SwapReport::messages_sent));
}

// A rank of a destination's range that does not bind it fails every rank
// before any byte moves, naming it; atomic takes one destination per rank.
TEST_F(MultiDestinationTest, MissingOrDoubledDestinationsFailEverywhere) {
  world_size_ = 2;
  src_layout_ = "tp=1,ep=2";
  Sources(src_layout_, 2);
  AddDestination("tp=2,ep=2,etp=1,family=vllm,part=main", 2, 0);
  AddDestination("tp=2,family=vllm,part=mtp", 2, 0);
  LocalWorld world(2);
  std::vector<Status> st(2);
  (void)world.ForEachRank([&](int r) {
    std::vector<DestinationModel> mine = {{&dsts_[0].ranks[r].model, 0}};
    if (r == 0) mine.push_back({&dsts_[1].ranks[r].model, 0});
    st[r] = SwapModelWeights(&src_models_[r], mine, world.rank(r)).status();
    return st[r];
  });
  for (const Status& s : st) {
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
    EXPECT_NE(s.message().find("rank 1's inputs differ from rank 0's: dst "),
              std::string::npos)
        << s.ToString();
  }
  SwapOptions atomic;
  atomic.atomic = true;
  (void)world.ForEachRank([&](int r) {
    std::vector<DestinationModel> mine = {{&dsts_[0].ranks[r].model, 0},
                                          {&dsts_[1].ranks[r].model, 0}};
    st[r] =
        SwapModelWeights(&src_models_[r], mine, world.rank(r), atomic).status();
    return st[r];
  });
  for (const Status& s : st) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find("atomic takes one per rank"), std::string::npos)
        << s.ToString();
  }
}

// vLLM's EPLB moves experts between refits: the next call rebuilds the
// cached plan, planning again only the experts whose EP ranks changed (in
// the MoE layer and the MTP layer), and stays bit-exact; moving back
// rebuilds again.
TEST_F(MultiDestinationTest, EplbPlacementChangeReplansOnlyTheMovedExperts) {
  world_size_ = 4;
  src_layout_ = "tp=2,ep=2,etp=1";
  Sources(src_layout_, 4);
  ClearPlanCache();
  LocalWorld world(4);
  // Experts 1 and 6 trade EP ranks, then trade back.
  const char* layouts[] = {"tp=1,ep=4,family=vllm,placement=0:1:2:3:4:5:6:7",
                           "tp=1,ep=4,family=vllm,placement=0:6:2:3:4:5:1:7",
                           "tp=1,ep=4,family=vllm,placement=0:1:2:3:4:5:6:7"};
  std::vector<uint64_t> replanned;
  for (const char* layout : layouts) {
    SCOPED_TRACE(layout);
    dsts_.clear();
    Destination& d = AddDestination(layout, 4, 0);
    std::vector<uint64_t> got(4);
    (void)world.ForEachRank([&](int r) -> Status {
      const DestinationModel mine{&d.ranks[r].model, 0};
      Result<SwapReport> rep =
          SwapModelWeights(&src_models_[r], {&mine, 1}, world.rank(r));
      EXPECT_TRUE(rep.ok()) << rep.status().ToString();
      if (rep.ok()) {
        EXPECT_TRUE(rep->plan_built);
        got[r] = rep->params_replanned;
      }
      return rep.status();
    });
    EXPECT_EQ(Wrong(d), 0);
    for (uint64_t n : got) EXPECT_EQ(n, got[0]);
    replanned.push_back(got[0]);
  }
  // Experts 1 and 6 moved: their fc1 and fc2 in 2 MoE layers (layer 1 and
  // the MTP layer).
  EXPECT_EQ(replanned[0], spec().params.size());
  EXPECT_EQ(replanned[1], 2u * 2 * 2);
  EXPECT_EQ(replanned[2], 2u * 2 * 2);
}

}  // namespace
}  // namespace refit::exec
