// The session API on the embedded transport: refits of the bundled real
// checkpoint into caller-owned tensors, the caches, the weight version, and
// bindings that must fail before any byte moves.
#include "refit/swap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>

#include "refit/checkpoint/checkpoint_shards.h"
#include "refit/exec/session/tensor_binding.h"
#include "refit/io/test_temp_dir.h"
#include "refit/local_world.h"
#include "refit/socket_communicator.h"
#include "refit/transport/embedded/embedded_copy_service.h"
#include "refit/transport/p2p/p2p_copy_service.h"
#include "refit/transport/p2p/thread_p2p_backend.h"
#include "refit/verify/dst_reference.h"

namespace refit::exec {
namespace {

const std::string kCkpt =
    std::string(REFIT_DATA_ROOT) + "/data/checkpoints/agilerl-tiny-qwen3-moe";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One slice of a stacked expert tensor and the per-expert view it stands for.
struct StackSlice {
  std::byte* stacked = nullptr;
  void* per_expert = nullptr;
  uint64_t bytes = 0;
};

struct Side {
  std::unique_ptr<ShardArena> data;
  std::unique_ptr<DstTensors> dst;  // destinations with formats
  std::optional<ShardedModel> model;
  std::vector<std::vector<std::byte>> stacks;  // stacked expert tensors
  std::vector<StackSlice> slices;
};

// Rebinds `side`'s routed experts as stacked tensors ("...linear_fc1.weight"
// [E_local, ...], and the stacked scales) in buffers of its own, filled with
// the per-expert tensors' bytes; `zero_per_expert` then zeroes those (a
// source refit must read the stacks).
void StackExperts(Side& side, bool zero_per_expert) {
  static const std::regex kExpert(
      R"((.*\.mlp\.experts\.linear_fc[12]\.weight)(\d+)(_scale_inv|_scale)?)");
  std::map<std::string, std::map<int, std::string>> stacks;
  for (const auto& [name, view] : side.model->tensors) {
    std::smatch m;
    if (!std::regex_match(name, m, kExpert)) continue;
    stacks[m[1].str() + m[3].str()][std::stoi(m[2].str())] = name;
  }
  side.stacks.reserve(stacks.size());
  for (const auto& [stacked, members] : stacks) {
    const TensorView first = side.model->tensors.at(members.begin()->second);
    side.stacks.emplace_back(first.nbytes() * members.size());
    std::byte* at = side.stacks.back().data();
    TensorView view = first;
    view.data = at;
    view.shape.insert(view.shape.begin(), static_cast<int64_t>(members.size()));
    for (const auto& [slot, name] : members) {
      TensorView v = side.model->tensors.at(name);
      EXPECT_EQ(v.nbytes(), first.nbytes()) << name;
      side.slices.push_back({at + slot * v.nbytes(), v.data, v.nbytes()});
      std::memcpy(side.slices.back().stacked, v.data, v.nbytes());
      if (zero_per_expert) std::memset(v.data, 0, v.nbytes());
      side.model->tensors.erase(name);
    }
    side.model->tensors[stacked] = view;
  }
}

// Copies every stacked slice back into the per-expert tensor it stands for
// (where the checks read).
void UnstackExperts(const Side& side) {
  for (const StackSlice& s : side.slices) {
    std::memcpy(s.per_expert, s.stacked, s.bytes);
  }
}

// A refit group over the bundled checkpoint: every rank's source tensors
// filled from it, destination tensors allocated (filled with `fill`).
class SwapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto spec = ModelSpecFromConfigJson(ReadFile(kCkpt + "/config.json"));
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    spec_ = std::make_shared<ModelSpec>(std::move(spec).value());
    auto ckpt = io::Checkpoint::Open(kCkpt);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    ckpt_ = std::make_unique<io::Checkpoint>(std::move(ckpt).value());
    auto bound = BindCheckpoint(*spec_, *ckpt_);
    ASSERT_TRUE(bound.ok()) << bound.status().ToString();
    bound_ = std::move(bound).value();
  }

  // Sets up `world` ranks: sources [src_off, +sw) of `src`, destinations
  // [dst_off, +dw) of `dst`.
  void Group(const char* src, int sw, const char* dst, int dw, int world,
             int src_off = 0, int dst_off = 0,
             std::optional<PrecisionOptions> transform = std::nullopt) {
    auto s = Layout::Create(*ParseParallelConfig(src), sw, *spec_);
    auto d = Layout::Create(*ParseParallelConfig(dst), dw, *spec_);
    ASSERT_TRUE(s.ok() && d.ok());
    auto topo = MakeTopology(*s, *d, src_off, dst_off, world);
    ASSERT_TRUE(topo.ok()) << topo.status().ToString();
    topo_.emplace(*topo);
    formats_ = IdentityFormats(*spec_);
    if (transform) {
      auto f = ResolveFormats(*spec_, *topo_, *transform);
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      formats_ = *f;
    }
    dst_spec_ = DestinationSpec(*spec_, formats_);
    options_ = SwapOptions{src_off, dst_off, transform};
    world_ = std::make_unique<LocalWorld>(world);
    src_.clear();
    dst_.clear();
    src_.resize(world);
    dst_.resize(world);
    for (int r = 0; r < sw; ++r) {
      Side& side = src_[r + src_off];
      side.data =
          std::make_unique<ShardArena>(ShardArena::ForRank(*spec_, *s, r));
      FillArena(*spec_, bound_, *side.data);
      side.model = ViewsOf(spec_, *spec_, formats_, *s, r, *side.data, nullptr,
                           SideBinding::Side::kSource);
    }
    for (int r = 0; r < dw; ++r) {
      Side& side = dst_[r + dst_off];
      side.dst = std::make_unique<DstTensors>(
          DstTensors::ForRank(dst_spec_, formats_, *d, r));
      Fill(*side.dst, std::byte{0xAB});
      side.model =
          ViewsOf(spec_, dst_spec_, formats_, *d, r, side.dst->data(),
                  &side.dst->scale_tensors(), SideBinding::Side::kDestination);
    }
  }

  // The fp8-block destination format when `quantised`, none otherwise.
  static std::optional<PrecisionOptions> Fp8BlockIf(bool quantised) {
    if (!quantised) return std::nullopt;
    PrecisionOptions o;
    EXPECT_TRUE(ApplyDstDType("fp8-block", o).ok());
    return o;
  }

  static void Fill(const DstTensors& t, std::byte value) {
    for (uint32_t p : t.data().params()) {
      std::fill_n(t.data().data(p), t.data().shard_bytes(p), value);
      if (std::byte* sc = t.scales(p)) {
        std::fill_n(sc, t.scale_layout(p).bytes, value);
      }
    }
  }

  // One SwapModelWeights on every rank; every rank's result.
  std::vector<Result<SwapReport>> SwapAll() {
    std::vector<Result<SwapReport>> out(world_->size(), Internal("not run"));
    world_->ForEachRank([&](int r) {
      const ShardedModel* s = src_[r].model ? &*src_[r].model : nullptr;
      const ShardedModel* d = dst_[r].model ? &*dst_[r].model : nullptr;
      out[r] = SwapModelWeights(s, d, world_->rank(r), options_);
      return out[r].status();
    });
    return out;
  }

  // Destination shards that differ from the checkpoint (in `formats_`).
  int Wrong() {
    int wrong = 0;
    for (const Side& side : dst_) {
      if (!side.dst) continue;
      std::vector<bool> bad(spec_->params.size(), false);
      MarkWrongDstShards(*spec_, formats_, bound_, *side.dst, bad);
      wrong += std::count(bad.begin(), bad.end(), true);
    }
    return wrong;
  }

  bool AllDstBytesAre(std::byte value) const {
    for (const Side& side : dst_) {
      if (!side.dst) continue;
      const ShardArena& a = side.dst->data();
      for (uint32_t p : a.params()) {
        for (uint64_t i = 0; i < a.shard_bytes(p); ++i) {
          if (a.data(p)[i] != value) return false;
        }
      }
    }
    return true;
  }

  std::shared_ptr<ModelSpec> spec_;
  std::unique_ptr<io::Checkpoint> ckpt_;
  BoundCheckpoint bound_;
  std::optional<RefitTopology> topo_;
  FormatPlan formats_;
  ModelSpec dst_spec_;
  SwapOptions options_;
  std::unique_ptr<LocalWorld> world_;
  std::vector<Side> src_, dst_;
};

TEST_F(SwapTest, CollocatedIsBitExactAndCached) {
  ClearAllCaches();
  Group("tp=2,ep=2", 4, "tp=1,ep=4", 4, 4);
  auto first = SwapAll();
  uint64_t sent = 0, received = 0, local = 0, messages = 0;
  for (auto& r : first) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r->plan_built);
    EXPECT_EQ(r->weight_version, 1u);
    sent += r->bytes_sent;
    received += r->bytes_received;
    local += r->bytes_local;
    messages += r->messages_sent;
  }
  EXPECT_EQ(Wrong(), 0);
  auto plan = BuildReshardPlan(*spec_, *topo_);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(sent, plan->bytes_remote);
  EXPECT_EQ(received, plan->bytes_remote);
  EXPECT_EQ(local, plan->bytes_local);
  EXPECT_EQ(messages, plan->messages);

  for (auto& r : SwapAll()) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_FALSE(r->plan_built);
    EXPECT_EQ(r->weight_version, 2u);
  }
  EXPECT_EQ(world_->rank(3).weight_version(), 2u);
  ClearPlanCache();
  for (auto& r : SwapAll()) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r->plan_built);
    EXPECT_EQ(r->weight_version, 3u);
  }
  EXPECT_EQ(Wrong(), 0);
}

// An optimizer step changes the source tensors in place: the next swap
// carries the new values (every byte XOR 0x5A, undone before the check).
TEST_F(SwapTest, SecondSwapCarriesTheStep) {
  Group("tp=2,ep=2", 4, "tp=1,ep=4", 4, 4);
  ASSERT_TRUE(SwapAll()[0].ok());
  for (Side& s : src_) {
    for (uint32_t p : s.data->params()) {
      for (uint64_t i = 0; i < s.data->shard_bytes(p); ++i) {
        s.data->data(p)[i] ^= std::byte{0x5A};
      }
    }
  }
  ASSERT_TRUE(SwapAll()[0].ok());
  EXPECT_GT(Wrong(), 0);
  for (Side& d : dst_) {
    const ShardArena& a = d.dst->data();
    for (uint32_t p : a.params()) {
      for (uint64_t i = 0; i < a.shard_bytes(p); ++i)
        a.data(p)[i] ^= std::byte{0x5A};
    }
  }
  EXPECT_EQ(Wrong(), 0);
}

// An embedded endpoint that declares CUDA memory (its tensors are host
// memory the embedded mover copies) and records the streams it is ordered
// after.
class StreamRecordingService final : public CopyService {
 public:
  StreamRecordingService(std::unique_ptr<CopyService> inner,
                         std::vector<uintptr_t>* streams)
      : inner_(std::move(inner)), streams_(streams) {}
  int rank() const override { return inner_->rank(); }
  TransportCapabilities capabilities() const override {
    TransportCapabilities caps = inner_->capabilities();
    caps.reads = caps.writes = {MemoryKind::kHost, MemoryKind::kCuda};
    return caps;
  }
  Status SubmitSend(int dst, uint64_t task,
                    std::vector<ConstBlock> blocks) override {
    return inner_->SubmitSend(dst, task, std::move(blocks));
  }
  Status SubmitRecv(int src, uint64_t task,
                    std::vector<MutBlock> blocks) override {
    return inner_->SubmitRecv(src, task, std::move(blocks));
  }
  Status Run() override { return inner_->Run(); }
  Status CopyLocal(std::span<const ConstBlock> from,
                   std::span<const MutBlock> to) override {
    return inner_->CopyLocal(from, to);
  }
  Status OrderAfter(uintptr_t cuda_stream) override {
    streams_->push_back(cuda_stream);
    return OkStatus();
  }
  Status Close() override { return inner_->Close(); }

  // One endpoint per rank of `fabric`, rank r recording into streams[r].
  static std::vector<std::unique_ptr<CopyService>> Connect(
      EmbeddedFabric& fabric, std::vector<std::vector<uintptr_t>>& streams) {
    std::vector<std::unique_ptr<CopyService>> services;
    for (size_t r = 0; r < streams.size(); ++r) {
      services.push_back(std::make_unique<StreamRecordingService>(
          fabric.Connect(static_cast<int>(r)), &streams[r]));
    }
    return services;
  }

 private:
  std::unique_ptr<CopyService> inner_;
  std::vector<uintptr_t>* streams_;
};

// A rank that binds CUDA tensors orders its refit after the caller's stream,
// once per refit, before any byte moves; a rank of host tensors does not.
TEST_F(SwapTest, CudaTensorsWaitForTheCallersStream) {
  Group("tp=2,ep=2", 4, "tp=1,ep=4", 4, 4);
  for (int r : {0, 2}) {
    for (auto& [name, view] : dst_[r].model->tensors) {
      view.memory = MemoryKind::kCuda;
    }
  }
  options_.cuda_stream = 0xABC0;
  EmbeddedFabric fabric(4);
  std::vector<std::vector<uintptr_t>> streams(4);
  auto services = StreamRecordingService::Connect(fabric, streams);
  for (int round = 1; round <= 2; ++round) {
    world_->ForEachRank([&](int r) {
      return ReshardModelWeights(&*src_[r].model, &*dst_[r].model,
                                 world_->rank(r), *services[r], options_)
          .status();
    });
    EXPECT_EQ(Wrong(), 0);
    for (int r = 0; r < 4; ++r) {
      const size_t want = (r == 0 || r == 2) ? round : 0;
      EXPECT_EQ(streams[r], std::vector<uintptr_t>(want, 0xABC0)) << r;
    }
  }
}

// A rank that converts formats converts on one kind of memory: a CUDA
// destination tensor beside host ones is refused by name, before any byte
// moves, and every rank fails alike.
TEST_F(SwapTest, ConvertingRankRefusesMixedMemoryKinds) {
  PrecisionOptions cast;
  cast.rules = {FormatRule{"*", FormatKind::kPlain, DType::kF16}};
  Group("tp=2,ep=2", 4, "tp=1,ep=4", 4, 4, 0, 0, cast);
  const std::string name = dst_[0].model->tensors.begin()->first;
  dst_[0].model->tensors.at(name).memory = MemoryKind::kCuda;
  EmbeddedFabric fabric(4);
  std::vector<std::vector<uintptr_t>> streams(4);
  auto services = StreamRecordingService::Connect(fabric, streams);
  std::vector<Status> got(4);
  world_->ForEachRank([&](int r) {
    got[r] = ReshardModelWeights(&*src_[r].model, &*dst_[r].model,
                                 world_->rank(r), *services[r], options_)
                 .status();
    return got[r];
  });
  EXPECT_EQ(got[0].code(), StatusCode::kUnimplemented);
  EXPECT_NE(got[0].message().find("destination tensor " + name +
                                  " is cuda memory but"),
            std::string::npos)
      << got[0].message();
  EXPECT_NE(got[0].message().find("converts on one kind of memory per rank"),
            std::string::npos);
  for (const Status& st : got) EXPECT_FALSE(st.ok());
}

// On a transport that moves device memory, a rank's transformed local
// pieces go through the transform, are flushed, and move with the service's
// own local copies (as CUDA tensors must): block FP8 on the sender, MXFP8
// on the receiver, and casts, all bit-exact (host tensors here).
TEST_F(SwapTest, TransformedLocalPiecesMoveThroughADeviceTransport) {
  for (const char* dtype : {"fp8-block", "mxfp8", "f16"}) {
    SCOPED_TRACE(dtype);
    PrecisionOptions t;
    ASSERT_TRUE(ApplyDstDType(dtype, t).ok());
    t.fp8.block = {16, 16};
    Group("tp=2,ep=2", 4, "tp=1,ep=4", 4, 4, 0, 0, t);
    EmbeddedFabric fabric(4);
    std::vector<std::vector<uintptr_t>> streams(4);
    auto services = StreamRecordingService::Connect(fabric, streams);
    for (const Status& st : world_->ForEachRank([&](int r) {
           return ReshardModelWeights(&*src_[r].model, &*dst_[r].model,
                                      world_->rank(r), *services[r], options_)
               .status();
         })) {
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
    EXPECT_EQ(Wrong(), 0);
  }
}

// The NCCL transport's protocol end to end: refits over the p2p copy
// service with every chunk staged (as NCCL stages what is not contiguous
// device memory) and a small staging bound, so messages span many rounds;
// bit-exact, twice (the second without message lists), and with a
// block-FP8 destination.
TEST_F(SwapTest, P2pCopyServiceRefitsBitExact) {
  for (bool quantised : {false, true}) {
    const std::optional<PrecisionOptions> fp8 = Fp8BlockIf(quantised);
    Group("tp=2,ep=2", 4, "tp=1,ep=4", 4, 4, 0, 0, fp8);
    ThreadP2pFabric fabric(4, {std::chrono::seconds(20), false});
    P2pCopyOptions options;
    options.max_staging_bytes = 64 << 10;
    std::vector<std::unique_ptr<CopyService>> services;
    for (int r = 0; r < 4; ++r) {
      services.push_back(MakeP2pCopyService(fabric.Connect(r), options));
    }
    for (int round = 0; round < 2; ++round) {
      const std::vector<Status> statuses = world_->ForEachRank([&](int r) {
        return ReshardModelWeights(&*src_[r].model, &*dst_[r].model,
                                   world_->rank(r), *services[r], options_)
            .status();
      });
      for (const Status& st : statuses) EXPECT_TRUE(st.ok()) << st.ToString();
      EXPECT_EQ(Wrong(), 0) << "quantised " << quantised << " round " << round;
      for (Side& d : dst_) Fill(*d.dst, std::byte{0xAB});
    }
  }
}

// The "socket" group (processes of one node without MPI; here threads with
// connections of their own): refits bit-exact, twice (the second on the
// cached plan and service), plain and block FP8.
TEST_F(SwapTest, SocketGroupsRefitBitExact) {
  for (bool quantised : {false, true}) {
    const std::optional<PrecisionOptions> fp8 = Fp8BlockIf(quantised);
    Group("tp=2,ep=2", 4, "tp=1,ep=4", 4, 4, 0, 0, fp8);
    const ::refit::testing::TempDir folder;
    const std::string dir = folder.str();
    std::vector<std::unique_ptr<Communicator>> groups(4);
    const std::vector<Status> statuses = world_->ForEachRank([&](int r) {
      REFIT_ASSIGN_OR_RETURN(groups[r], SocketCommunicator(dir, r, 4));
      for (int round = 0; round < 2; ++round) {
        REFIT_ASSIGN_OR_RETURN(
            const SwapReport report,
            SwapModelWeights(&*src_[r].model, &*dst_[r].model, *groups[r],
                             options_));
        if (report.weight_version != uint64_t(round + 1)) {
          return Internal("weight version " +
                          std::to_string(report.weight_version));
        }
      }
      return OkStatus();
    });
    for (const Status& st : statuses) EXPECT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(Wrong(), 0) << "quantised " << quantised;
    groups.clear();
  }
}

// Node fan-out, executed: two data-parallel replicas of the destination
// on one node (4 GPUs a node) fed from the source node, and a collocated
// layout whose expert replicas on a node hold experts from the other node,
// and unsplit tensors whose FP8 data and scales are forwarded as they are;
// plain and block-FP8 destinations, over the embedded copy service and the p2p
// one, twice each: bit-exact, and the plan does forward.
TEST_F(SwapTest, NodeFanoutRefitsBitExact) {
  struct Case {
    const char* src;
    int sw;
    const char* dst;
    int world, dst_off, per_node;
    // FP8 pieces forwarded: only where no TP cut goes through a block (the
    // others are quantised on receipt and kept out of fan-out).
    bool fp8_forwards;
  };
  for (const Case& c :
       {Case{"tp=2,ep=2", 4, "tp=1,ep=2", 8, 4, 4, false},
        Case{"tp=1,ep=2", 2, "tp=1,ep=2", 6, 2, 2, true},
        Case{"tp=4,ep=2", 8, "tp=1,ep=2,etp=1", 8, 0, 4, false}}) {
    for (bool quantised : {false, true}) {
      SCOPED_TRACE(std::string(c.dst) + " world " + std::to_string(c.world) +
                   (quantised ? " fp8-block" : " plain"));
      const std::optional<PrecisionOptions> fp8 = Fp8BlockIf(quantised);
      Group(c.src, c.sw, c.dst, c.world - c.dst_off, c.world, 0, c.dst_off,
            fp8);
      options_.fanout_gpus_per_node = c.per_node;
      PlanOptions po = formats_.plan_options();
      po.fanout_gpus_per_node = c.per_node;
      const ReshardPlan plan = *BuildReshardPlan(*spec_, *topo_, po);
      if (!quantised) ASSERT_FALSE(plan.forwards.empty());
      int quantised_forwards = 0;  // FP8 data and scales from the leader
      for (const TransferOp& op : plan.forwards) {
        for (const Piece& pc : op.pieces) {
          quantised_forwards +=
              formats_.params[pc.dst_param].kind != FormatKind::kPlain;
        }
      }
      EXPECT_EQ(quantised_forwards > 0, quantised && c.fp8_forwards);
      for (int round = 0; round < 2; ++round) {
        for (auto& r : SwapAll()) ASSERT_TRUE(r.ok()) << r.status().ToString();
        EXPECT_EQ(Wrong(), 0) << "embedded, round " << round;
        for (Side& d : dst_) {
          if (d.dst) Fill(*d.dst, std::byte{0xAB});
        }
      }
      ThreadP2pFabric fabric(c.world, {std::chrono::seconds(20), false});
      std::vector<std::unique_ptr<CopyService>> services;
      for (int r = 0; r < c.world; ++r) {
        services.push_back(MakeP2pCopyService(fabric.Connect(r), {}));
      }
      const std::vector<Status> statuses = world_->ForEachRank([&](int r) {
        const ShardedModel* s = src_[r].model ? &*src_[r].model : nullptr;
        const ShardedModel* d = dst_[r].model ? &*dst_[r].model : nullptr;
        return ReshardModelWeights(s, d, world_->rank(r), *services[r],
                                   options_)
            .status();
      });
      for (const Status& st : statuses) EXPECT_TRUE(st.ok()) << st.ToString();
      EXPECT_EQ(Wrong(), 0) << "p2p";
    }
  }
}

// Non-collocated 2 -> 4 with rank offsets, and an idle rank that holds
// neither model but joins every call.
TEST_F(SwapTest, NonCollocatedWithIdleRank) {
  Group("tp=2", 2, "tp=1,ep=4", 4, 7, 0, 2);
  for (auto& r : SwapAll()) ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Wrong(), 0);
  EXPECT_EQ(world_->rank(6).weight_version(), 1u);
}

TEST_F(SwapTest, BlockFp8Destination) {
  PrecisionOptions p;
  ASSERT_TRUE(ApplyDstDType("fp8-block", p).ok());
  Group("tp=2,ep=2", 4, "tp=1,ep=4", 4, 4, 0, 0, p);
  ASSERT_GT(formats_.quantised, 0);
  for (auto& r : SwapAll()) ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Wrong(), 0);
  // The caller's tensors are what ShardShapes says a rank binds.
  auto shapes =
      ShardShapes(*spec_, *ParseParallelConfig("tp=1,ep=4"), 1, 4, &p);
  ASSERT_TRUE(shapes.ok()) << shapes.status().ToString();
  const ShardedModel& m = *dst_[1].model;
  ASSERT_EQ(shapes->size(), m.tensors.size());
  int scales = 0;
  for (const ShardShape& s : *shapes) {
    auto it = m.tensors.find(s.name);
    ASSERT_NE(it, m.tensors.end()) << s.name;
    EXPECT_EQ(it->second.shape, s.shape) << s.name;
    EXPECT_EQ(it->second.dtype, s.dtype) << s.name;
    scales += s.name.ends_with("_scale_inv");
  }
  EXPECT_EQ(scales, formats_.quantised == 0 ? 0 : scales);
  EXPECT_GT(scales, 0);
}

// A bad binding on one rank fails the call on every rank with the same
// message naming that rank and tensor, and no destination byte changes.
struct BadBinding {
  const char* what;
  void (*spoil)(ShardedModel&, const std::string& name);
  const char* expect;
  StatusCode code = StatusCode::kInvalidArgument;
};

class SwapBindingTest : public SwapTest,
                        public ::testing::WithParamInterface<BadBinding> {};

TEST_P(SwapBindingTest, FailsEverywhereBeforeAnyByteMoves) {
  Group("tp=2,ep=2", 4, "tp=1,ep=4", 4, 4);
  ShardedModel& m = *dst_[2].model;
  const std::string name = "decoder.layers.0.self_attention.linear_qkv.weight";
  ASSERT_TRUE(m.tensors.contains(name));
  GetParam().spoil(m, name);
  auto results = SwapAll();
  for (auto& r : results) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), GetParam().code);
    EXPECT_EQ(r.status().message(), results[0].status().message());
  }
  const std::string msg = results[0].status().message();
  EXPECT_NE(msg.find("rank 2: destination tensor "), std::string::npos) << msg;
  EXPECT_NE(msg.find(GetParam().expect), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos);
  EXPECT_TRUE(AllDstBytesAre(std::byte{0xAB}));
  EXPECT_EQ(world_->rank(0).weight_version(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Swap, SwapBindingTest,
    ::testing::Values(
        BadBinding{"shape",
                   [](ShardedModel& m, const std::string& n) {
                     m.tensors[n].shape[0] += 1;
                   },
                   "linear_qkv.weight: shape ["},
        BadBinding{"dtype",
                   [](ShardedModel& m, const std::string& n) {
                     m.tensors[n].dtype = DType::kF16;
                   },
                   "linear_qkv.weight: dtype F16, expected F32"},
        BadBinding{
            "missing",
            [](ShardedModel& m, const std::string& n) { m.tensors.erase(n); },
            "linear_qkv.weight: missing", StatusCode::kNotFound},
        BadBinding{"unknown",
                   [](ShardedModel& m, const std::string&) {
                     m.tensors["decoder.layers.9.bogus"] = {};
                   },
                   "decoder.layers.9.bogus: not a tensor of this rank's model"},
        BadBinding{"strides",
                   [](ShardedModel& m, const std::string& n) {
                     auto& v = m.tensors[n];
                     v.strides = {1, v.shape[0]};
                   },
                   "not contiguous"},
        BadBinding{"memory",
                   [](ShardedModel& m, const std::string& n) {
                     m.tensors[n].memory = MemoryKind::kCuda;
                   },
                   "cuda memory, which this transport cannot access"},
        BadBinding{"null",
                   [](ShardedModel& m, const std::string& n) {
                     m.tensors[n].data = nullptr;
                   },
                   "null data pointer"}),
    [](const auto& info) { return std::string(info.param.what); });

TEST_F(SwapTest, RanksThatDisagreeOnLayoutsFailAlike) {
  Group("tp=2,ep=2", 4, "tp=1,ep=4", 4, 4);
  dst_[1].model->layout = *ParseParallelConfig("tp=2,ep=2");
  auto results = SwapAll();
  for (auto& r : results) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(
        r.status().message().find("rank 1's inputs differ from rank 0's: dst"),
        std::string::npos)
        << r.status().message();
  }
}

TEST_F(SwapTest, ModelOnTheWrongRankIsNamed) {
  Group("tp=2", 2, "tp=1,ep=4", 4, 6, 0, 2);
  options_.dst_rank_offset = 1;  // rank 2's destination model is rank 0
  auto results = SwapAll();
  ASSERT_FALSE(results[0].ok());
  EXPECT_NE(results[0].status().message().find(
                "rank 2: destination model is rank 0 of its layout"),
            std::string::npos)
      << results[0].status().message();
}

// Routed experts bound as stacked tensors (vLLM's FusedMoE w13_weight /
// w2_weight) on the destination, the source or both, plain, block FP8 and
// MXFP8 (plain and swizzled scales) with stacked scales: bit-exact, as the
// per-expert refit; the stacked tensors are those ShardShapes(kStacked)
// lists.
TEST_F(SwapTest, StackedExpertsRefitBitExact) {
  struct Case {
    const char* src;
    const char* dst;
    bool stack_src, stack_dst;
    const char* format = nullptr;  // a --dst-dtype, or nullptr
    bool swizzled = false;
  };
  for (const Case& c :
       {Case{"tp=2,ep=2", "tp=1,ep=4", false, true},
        Case{"tp=2,ep=2", "tp=1,ep=4", false, true, "fp8-block"},
        Case{"tp=1,ep=4", "tp=2,ep=2", true, false},
        Case{"tp=2,ep=2", "tp=2,ep=2", true, true, "fp8-block"},
        Case{"tp=1,ep=4", "tp=4,ep=1", true, true, "fp8-block"},
        Case{"tp=2,ep=2", "tp=1,ep=4", true, true, "mxfp8"},
        Case{"tp=2,ep=2", "tp=1,ep=4", false, true, "mxfp8", true}}) {
    SCOPED_TRACE(std::string(c.src) + " -> " + c.dst + " " +
                 (c.format ? c.format : "plain") +
                 (c.swizzled ? " swizzled" : ""));
    std::optional<PrecisionOptions> fp8;
    if (c.format != nullptr) {
      PrecisionOptions o;
      ASSERT_TRUE(ApplyDstDType(c.format, o).ok());
      o.mxfp8_swizzled = c.swizzled;
      fp8 = o;
    }
    Group(c.src, 4, c.dst, 4, 4, 0, 0, fp8);
    for (int r = 0; r < 4; ++r) {
      if (c.stack_src) StackExperts(src_[r], true);
      if (c.stack_dst) StackExperts(dst_[r], false);
    }
    for (int round = 0; round < 2; ++round) {
      for (auto& r : SwapAll()) ASSERT_TRUE(r.ok()) << r.status().ToString();
      for (const Side& d : dst_) UnstackExperts(d);
      EXPECT_EQ(Wrong(), 0) << "round " << round;
      for (Side& d : dst_) Fill(*d.dst, std::byte{0xAB});
    }
    const char* layout = c.stack_dst ? c.dst : c.src;
    const ShardedModel& m = c.stack_dst ? *dst_[3].model : *src_[3].model;
    auto shapes = ShardShapes(*spec_, *ParseParallelConfig(layout), 3, 4,
                              c.stack_dst && fp8 ? &*fp8 : nullptr,
                              ExpertBinding::kStacked);
    ASSERT_TRUE(shapes.ok()) << shapes.status().ToString();
    ASSERT_EQ(shapes->size(), m.tensors.size());
    if (c.format != nullptr && c.stack_dst) {
      const std::string scale =
          std::string(c.format) == "mxfp8" ? "_scale" : "_scale_inv";
      EXPECT_TRUE(m.tensors.contains(
          "decoder.layers.1.mlp.experts.linear_fc1.weight" + scale));
    }
    for (const ShardShape& s : *shapes) {
      auto it = m.tensors.find(s.name);
      ASSERT_NE(it, m.tensors.end()) << s.name;
      EXPECT_EQ(it->second.shape, s.shape) << s.name;
      EXPECT_EQ(it->second.dtype, s.dtype) << s.name;
    }
  }
}

// vLLM's w13_weight of a local expert is Megatron's gated fc1 shard:
// [gate rows of this ETP rank; up rows], 2 * I / etp rows; w2_weight is the
// fc2 shard [H, I / etp]; block-FP8 scales restart at the up half
// (2 * ceil(I_etp / 128) rows, as vLLM's w13_weight_scale_inv).
TEST_F(SwapTest, StackedExpertShapesAreVllmFusedMoe) {
  PrecisionOptions o;
  ASSERT_TRUE(ApplyDstDType("fp8-block", o).ok());
  auto shapes = ShardShapes(*spec_, *ParseParallelConfig("tp=2,ep=2"), 0, 4, &o,
                            ExpertBinding::kStacked);
  ASSERT_TRUE(shapes.ok()) << shapes.status().ToString();
  std::map<std::string, std::vector<int64_t>> by_name;
  for (const ShardShape& s : *shapes) by_name[s.name] = s.shape;
  const int64_t experts = spec_->num_experts / 2, h = spec_->hidden_size;
  int64_t inter = 0;
  for (const ParamSpec& p : spec_->params) {
    if (p.expert == 0 && p.name.find("linear_fc2") != std::string::npos) {
      inter = p.shape[1];
    }
  }
  ASSERT_GT(inter, 0);
  const std::string fc = "decoder.layers.1.mlp.experts.linear_fc";
  auto blocks = [](int64_t n) { return (n + 127) / 128; };
  EXPECT_EQ(by_name[fc + "1.weight"],
            (std::vector<int64_t>{experts, 2 * (inter / 2), h}));
  EXPECT_EQ(by_name[fc + "2.weight"],
            (std::vector<int64_t>{experts, h, inter / 2}));
  EXPECT_EQ(by_name[fc + "1.weight_scale_inv"],
            (std::vector<int64_t>{experts, 2 * blocks(inter / 2), blocks(h)}));
  EXPECT_EQ(by_name[fc + "2.weight_scale_inv"],
            (std::vector<int64_t>{experts, blocks(h), blocks(inter / 2)}));
  EXPECT_FALSE(by_name.contains(fc + "1.weight0"));
}

// A stack bound both ways, or of the wrong shape or dtype, fails on every
// rank before any byte moves, naming the rank and the stacked tensor.
TEST_F(SwapTest, BadStackedBindingFailsEverywhere) {
  const std::string fc1 = "decoder.layers.0.mlp.experts.linear_fc1.weight";
  struct Case {
    const char* what;
    std::function<void(ShardedModel&)> spoil;
    std::string expect;
    StatusCode code = StatusCode::kInvalidArgument;
  };
  const std::vector<Case> cases = {
      {"both", [&](ShardedModel& m) { m.tensors[fc1 + "0"] = m.tensors[fc1]; },
       "rank 2: destination tensor " + fc1 +
           ": bound both stacked and per expert (as " + fc1 + "0)"},
      {"shape", [&](ShardedModel& m) { m.tensors[fc1].shape[0] += 1; },
       "rank 2: destination tensor " + fc1 + ": shape ["},
      {"dtype", [&](ShardedModel& m) { m.tensors[fc1].dtype = DType::kF16; },
       "rank 2: destination tensor " + fc1 + ": dtype F16, expected "},
      {"missing", [&](ShardedModel& m) { m.tensors.erase(fc1); },
       "rank 2: destination tensor " + fc1 + "0: missing (expected [64, 64] " +
           "F32, or its experts stacked as " + fc1 + " [1, 64, 64])",
       StatusCode::kNotFound},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Group("tp=2,ep=2", 4, "tp=1,ep=4", 4, 4);
    for (int r = 0; r < 4; ++r) StackExperts(dst_[r], false);
    c.spoil(*dst_[2].model);
    auto results = SwapAll();
    for (auto& r : results) {
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), c.code);
      EXPECT_EQ(r.status().message(), results[0].status().message());
    }
    const std::string msg = results[0].status().message();
    EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_TRUE(AllDstBytesAre(std::byte{0xAB}));
    for (const Side& d : dst_) {
      for (const auto& stack : d.stacks) {
        EXPECT_TRUE(std::all_of(stack.begin(), stack.end(), [](std::byte b) {
          return b == std::byte{0xAB};
        }));
      }
    }
  }
}

TEST(LocalWorldTest, SilentRankIsADeadlineNamingIt) {
  LocalWorld world(3, LocalWorldOptions{std::chrono::milliseconds(200)});
  auto statuses = world.ForEachRank([&](int r) -> Status {
    if (r == 1) return OkStatus();  // never joins
    return world.rank(r).AllGather("x").status();
  });
  for (int r : {0, 2}) {
    EXPECT_EQ(statuses[r].code(), StatusCode::kDeadlineExceeded);
    EXPECT_NE(statuses[r].message().find("no progress for ranks 1"),
              std::string::npos)
        << statuses[r].message();
  }
}

}  // namespace
}  // namespace refit::exec
