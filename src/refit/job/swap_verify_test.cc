// SwapOptions::verify = kChecksum through the session API on the bundled
// checkpoint: bit-exact refits, a corrupted message failing every rank with
// the weight version kept (and the same corruption unnoticed without it), and
// ranks that disagree on the option; per destination tensor digests.
// All-or-nothing versions: a refit failing mid-way keeps the version and
// names the tensors it may have left partial; SwapOptions::atomic keeps the
// caller's bytes, publishes exactly the plain refit's bytes, refuses CUDA.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "refit/checkpoint/checkpoint_shards.h"
#include "refit/exec/session/tensor_binding.h"
#include "refit/local_world.h"
#include "refit/swap.h"
#include "refit/transport/embedded/embedded_copy_service.h"
#include "refit/transport/faulty/faulty_copy_service.h"
#include "refit/verify/dst_reference.h"

namespace refit::exec {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kCkpt =
    std::string(REFIT_DATA_ROOT) + "/data/checkpoints/agilerl-tiny-qwen3-moe";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Four collocated ranks refitting tp=2,ep=2 into tp=1,ep=4.
class SwapVerifyTest : public ::testing::Test {
 protected:
  static constexpr int kWorld = 4;

  void SetUp() override {
    ClearAllCaches();
    auto spec = ModelSpecFromConfigJson(ReadFile(kCkpt + "/config.json"));
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    spec_ = std::make_shared<ModelSpec>(std::move(spec).value());
    auto ckpt = io::Checkpoint::Open(kCkpt);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    ckpt_ = std::make_unique<io::Checkpoint>(std::move(ckpt).value());
    auto bound = BindCheckpoint(*spec_, *ckpt_);
    ASSERT_TRUE(bound.ok()) << bound.status().ToString();
    bound_ = std::move(bound).value();
    Build("tp=2,ep=2");
    world_ = std::make_unique<LocalWorld>(kWorld);
  }

  // Every rank's tensors: sources in `src_layout`, destinations in
  // `dst_layout`.
  void Build(const char* src_layout, const char* dst_layout = "tp=1,ep=4") {
    src_.clear();
    dst_.clear();
    src_models_.clear();
    dst_models_.clear();
    auto s = Layout::Create(*ParseParallelConfig(src_layout), kWorld, *spec_);
    auto d = Layout::Create(*ParseParallelConfig(dst_layout), kWorld, *spec_);
    ASSERT_TRUE(s.ok() && d.ok());
    formats_ = IdentityFormats(*spec_);
    dst_spec_ = DestinationSpec(*spec_, formats_);
    for (int r = 0; r < kWorld; ++r) {
      src_.push_back(
          std::make_unique<ShardArena>(ShardArena::ForRank(*spec_, *s, r)));
      FillArena(*spec_, bound_, *src_.back());
      src_models_.push_back(ViewsOf(spec_, *spec_, formats_, *s, r, *src_[r],
                                    nullptr, SideBinding::Side::kSource));
      dst_.push_back(std::make_unique<DstTensors>(
          DstTensors::ForRank(dst_spec_, formats_, *d, r)));
      dst_models_.push_back(ViewsOf(
          spec_, dst_spec_, formats_, *d, r, dst_.back()->data(),
          &dst_.back()->scale_tensors(), SideBinding::Side::kDestination));
    }
  }

  // One refit on every rank: over the group's service, or with `fault`
  // (every rank's endpoint of a fresh embedded fabric under a
  // FaultyCopyService) through ReshardModelWeights.
  std::vector<Status> RefitAll(
      const std::vector<SwapOptions>& options, const FaultPlan* fault = nullptr,
      std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::vector<Status> out(kWorld);
    EmbeddedFabric fabric(kWorld, timeout);
    FaultLog log;
    world_->ForEachRank([&](int r) {
      Result<SwapReport> rep = Internal("not run");
      if (fault == nullptr) {
        rep = SwapModelWeights(&src_models_[r], &dst_models_[r],
                               world_->rank(r), options[r]);
      } else {
        FaultyCopyService service(fabric.Connect(r), *fault, log);
        rep = ReshardModelWeights(&src_models_[r], &dst_models_[r],
                                  world_->rank(r), service, options[r]);
      }
      out[r] = rep.status();
      if (rep.ok()) {
        digests_[r] = rep->dst_digests;
        reports_[r] = *rep;
      }
      return out[r];
    });
    return out;
  }

  std::vector<SwapOptions> All(VerifyMode mode) {
    SwapOptions o;
    o.verify = mode;
    return std::vector<SwapOptions>(kWorld, o);
  }

  // Sets every destination byte of every rank (padding rows included).
  void FillDst(uint8_t byte) {
    for (const auto& d : dst_) {
      std::memset(d->data().raw(), byte, d->data().raw_bytes());
    }
  }

  // Every rank's destination bytes.
  std::vector<std::vector<std::byte>> DstBytes() const {
    std::vector<std::vector<std::byte>> out;
    for (const auto& d : dst_) {
      const std::byte* p = d->data().raw();
      out.emplace_back(p, p + d->data().raw_bytes());
    }
    return out;
  }

  // The names of rank r's destination tensors, sorted.
  std::vector<std::string> DstNames(int r) const {
    std::vector<std::string> names;
    for (const auto& [name, view] : dst_models_[r].tensors) {
      names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  // Destination shards that differ from the checkpoint.
  int Wrong() {
    int wrong = 0;
    for (const auto& d : dst_) {
      std::vector<bool> bad(spec_->params.size(), false);
      MarkWrongDstShards(*spec_, formats_, bound_, *d, bad);
      wrong += std::count(bad.begin(), bad.end(), true);
    }
    return wrong;
  }

  std::shared_ptr<ModelSpec> spec_;
  std::unique_ptr<io::Checkpoint> ckpt_;
  BoundCheckpoint bound_;
  FormatPlan formats_;
  ModelSpec dst_spec_;
  std::vector<std::unique_ptr<ShardArena>> src_;
  std::vector<std::unique_ptr<DstTensors>> dst_;
  std::vector<ShardedModel> src_models_, dst_models_;
  std::unique_ptr<LocalWorld> world_;
  std::vector<TensorDigest> digests_[kWorld];
  SwapReport reports_[kWorld];
};

TEST_F(SwapVerifyTest, ChecksummedRefitsAreBitExact) {
  for (int i = 0; i < 3; ++i) {
    for (const Status& st : RefitAll(All(VerifyMode::kChecksum))) {
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
    EXPECT_EQ(Wrong(), 0);
  }
  EXPECT_EQ(world_->rank(0).weight_version(), 3u);
}

// One flipped bit in every message: every rank fails with the receiver's
// one-line error, and the weight version stays.
TEST_F(SwapVerifyTest, ACorruptedMessageFailsEveryRank) {
  FaultPlan plan;
  plan.With(FaultKind::kFlipBit, 1.0);
  const std::vector<Status> st = RefitAll(All(VerifyMode::kChecksum), &plan);
  for (int r = 0; r < kWorld; ++r) {
    EXPECT_EQ(st[r].code(), StatusCode::kDataLoss) << st[r].ToString();
    EXPECT_THAT(st[r].message(), HasSubstr("checksum mismatch"));
    EXPECT_THAT(st[r].message(), HasSubstr("checksum: task "));
    // The session names what the message carries.
    EXPECT_THAT(st[r].message(), HasSubstr(" (parameter"));
    EXPECT_THAT(st[r].message(), HasSubstr("decoder."));
  }
  std::cout << st[0].message() << "\n";
  EXPECT_EQ(world_->rank(0).weight_version(), 0u);
}

// The default, kAuto, checksums a refit of host tensors: the same flipped
// bits fail every rank, and a clean refit reports itself verified.
TEST_F(SwapVerifyTest, TheDefaultChecksumsHostTensors) {
  ASSERT_EQ(SwapOptions{}.verify, VerifyMode::kAuto);
  FaultPlan plan;
  plan.With(FaultKind::kFlipBit, 1.0);
  for (const Status& st : RefitAll(All(VerifyMode::kAuto), &plan)) {
    EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
  }
  EXPECT_EQ(world_->rank(0).weight_version(), 0u);
  for (const Status& st : RefitAll(All(VerifyMode::kAuto))) {
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  EXPECT_EQ(Wrong(), 0);
  for (int r = 0; r < kWorld; ++r) EXPECT_TRUE(reports_[r].verified);
  for (const Status& st : RefitAll(All(VerifyMode::kNone))) {
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  for (int r = 0; r < kWorld; ++r) EXPECT_FALSE(reports_[r].verified);
}

TEST_F(SwapVerifyTest, WithoutChecksumsTheSameCorruptionGoesUnnoticed) {
  FaultPlan plan;
  plan.With(FaultKind::kFlipBit, 1.0);
  for (const Status& st : RefitAll(All(VerifyMode::kNone), &plan)) {
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  EXPECT_GT(Wrong(), 0);
}

TEST_F(SwapVerifyTest, RanksMustAgreeOnVerification) {
  std::vector<SwapOptions> options = All(VerifyMode::kNone);
  options[2].verify = VerifyMode::kChecksum;
  for (const Status& st : RefitAll(options)) {
    EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.ToString();
  }
}

// The digests of the destination tensors do not depend on the source
// layout, cover every bound tensor in name order, and change with a byte.
TEST_F(SwapVerifyTest, DestinationDigestsAreTheSameFromAnySourceLayout) {
  std::vector<SwapOptions> options = All(VerifyMode::kChecksum);
  for (SwapOptions& o : options) o.dst_digests = true;
  for (const Status& st : RefitAll(options))
    ASSERT_TRUE(st.ok()) << st.ToString();
  std::vector<std::vector<TensorDigest>> first(digests_, digests_ + kWorld);
  Build("tp=1,ep=2");
  ClearAllCaches();
  for (const Status& st : RefitAll(options))
    ASSERT_TRUE(st.ok()) << st.ToString();
  for (int r = 0; r < kWorld; ++r) {
    ASSERT_EQ(first[r].size(), dst_models_[r].tensors.size());
    ASSERT_EQ(digests_[r].size(), first[r].size());
    for (size_t i = 0; i < first[r].size(); ++i) {
      EXPECT_EQ(digests_[r][i].name, first[r][i].name);
      EXPECT_EQ(digests_[r][i].xxh3, first[r][i].xxh3) << first[r][i].name;
      if (i > 0) EXPECT_LT(first[r][i - 1].name, first[r][i].name);
    }
  }
  // One byte of rank 1's first tensor changes its digest (the refit
  // rewrites it: digest it without refitting again).
  const TensorView& v = dst_models_[1].tensors.at(first[1][0].name);
  static_cast<std::byte*>(v.data)[0] ^= std::byte{1};
  EXPECT_NE(XXH3_64bits(v.data, v.nbytes()), first[1][0].xxh3);
}

std::vector<SwapOptions> Atomic(VerifyMode mode) {
  SwapOptions o;
  o.verify = mode;
  o.atomic = true;
  return std::vector<SwapOptions>(4, o);
}

// A refit that fails once bytes moved (a corrupted message, caught by the
// checksums, fails every rank in the agreement round): the version stays,
// and every rank names exactly its destination tensors as maybe partial,
// until the next refit succeeds.
TEST_F(SwapVerifyTest, AFailedRefitNamesThePartialTensors) {
  for (const Status& st : RefitAll(All(VerifyMode::kChecksum))) {
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  FaultPlan plan;
  plan.With(FaultKind::kFlipBit, 1.0);
  const std::vector<Status> st = RefitAll(All(VerifyMode::kChecksum), &plan);
  for (int r = 0; r < kWorld; ++r) {
    EXPECT_EQ(st[r].code(), StatusCode::kDataLoss) << st[r].ToString();
    const std::vector<std::string> names = DstNames(r);
    EXPECT_EQ(world_->rank(r).partial_tensors(), names);
    EXPECT_THAT(st[r].message(),
                HasSubstr("; rank " + std::to_string(r) + ": " +
                          std::to_string(names.size()) +
                          " destination tensors may hold partial bytes (" +
                          names[0] + ", " + names[1] + ", " + names[2] +
                          " and " + std::to_string(names.size() - 3) +
                          " more; Communicator::partial_tensors)"));
    EXPECT_EQ(world_->rank(r).weight_version(), 1u);
  }
  std::cout << st[1].message() << "\n";
  for (const Status& s : RefitAll(All(VerifyMode::kChecksum))) {
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  EXPECT_EQ(Wrong(), 0);
  for (int r = 0; r < kWorld; ++r) {
    EXPECT_TRUE(world_->rank(r).partial_tensors().empty());
    EXPECT_EQ(world_->rank(r).weight_version(), 2u);
  }
}

// Every message dropped: the ranks time out (kDeadlineExceeded, returned
// before the agreement round) and still name their partial tensors.
TEST_F(SwapVerifyTest, ATimedOutRefitNamesThePartialTensors) {
  world_ = std::make_unique<LocalWorld>(
      kWorld, LocalWorldOptions{std::chrono::milliseconds(500)});
  FaultPlan plan;
  plan.With(FaultKind::kDrop, 1.0);
  const std::vector<Status> st =
      RefitAll(All(VerifyMode::kNone), &plan, std::chrono::milliseconds(200));
  for (int r = 0; r < kWorld; ++r) {
    EXPECT_EQ(st[r].code(), StatusCode::kDeadlineExceeded) << st[r].ToString();
    EXPECT_EQ(world_->rank(r).partial_tensors(), DstNames(r));
    EXPECT_THAT(st[r].message(), HasSubstr("may hold partial bytes"));
    EXPECT_EQ(world_->rank(r).weight_version(), 0u);
  }
}

// Failures before any byte moved name no tensor: a bad binding on one rank.
TEST_F(SwapVerifyTest, ABindingErrorNamesNoPartialTensor) {
  dst_models_[2].tensors.erase(DstNames(2)[0]);
  for (const Status& st : RefitAll(All(VerifyMode::kNone))) {
    EXPECT_EQ(st.code(), StatusCode::kNotFound) << st.ToString();
    EXPECT_THAT(st.message(), Not(HasSubstr("partial")));
  }
  for (int r = 0; r < kWorld; ++r) {
    EXPECT_TRUE(world_->rank(r).partial_tensors().empty());
  }
}

// With atomic, the same failure leaves every caller byte as it was.
TEST_F(SwapVerifyTest, AnAtomicRefitThatFailsChangesNoCallerByte) {
  FillDst(0x5A);
  const auto before = DstBytes();
  FaultPlan plan;
  plan.With(FaultKind::kFlipBit, 1.0);
  const std::vector<Status> st = RefitAll(Atomic(VerifyMode::kChecksum), &plan);
  for (int r = 0; r < kWorld; ++r) {
    EXPECT_EQ(st[r].code(), StatusCode::kDataLoss) << st[r].ToString();
    EXPECT_THAT(st[r].message(), Not(HasSubstr("partial")));
    EXPECT_TRUE(world_->rank(r).partial_tensors().empty());
    EXPECT_EQ(world_->rank(r).weight_version(), 0u);
  }
  EXPECT_TRUE(DstBytes() == before);
}

// An atomic refit publishes exactly the bytes of a plain one: padding rows
// as they were, fused engine tensors and HF parts (views that must stay
// adjacent) included; its shadow is the destination tensors' bytes.
TEST_F(SwapVerifyTest, AnAtomicRefitPublishesThePlainRefitsBytes) {
  // Destination layouts, and whether their vocabulary is padded (whole HF
  // tensors are not).
  const std::pair<const char*, bool> layouts[] = {
      {"tp=1,ep=4", true},
      {"tp=1,ep=4,family=vllm", true},
      {"tp=1,ep=4,family=hf", false}};
  for (const auto& [dst, padding] : layouts) {
    SCOPED_TRACE(dst);
    Build("tp=2,ep=2", dst);
    FillDst(0x5A);
    for (const Status& st : RefitAll(All(VerifyMode::kNone))) {
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
    const auto want = DstBytes();
    // Twice: the second call reuses the first one's shadow memory, refilled
    // from the caller's bytes.
    for (int i = 0; i < 2; ++i) {
      FillDst(0x5A);
      for (const Status& st : RefitAll(Atomic(VerifyMode::kNone))) {
        ASSERT_TRUE(st.ok()) << st.ToString();
      }
      EXPECT_TRUE(DstBytes() == want);
    }
    int padded = 0;
    for (int r = 0; r < kWorld; ++r) {
      uint64_t bytes = 0;
      for (const auto& [name, v] : dst_models_[r].tensors) {
        bytes += v.nbytes();
        // The vocabulary's padding rows (7 rows hold weights; Megatron pads
        // to 128 rows, vLLM to 64).
        const bool vocab = name.find("embed") != std::string::npos ||
                           name.find("output_layer") != std::string::npos ||
                           name.find("lm_head") != std::string::npos;
        if (!vocab || v.shape.size() != 2 || v.shape[0] <= 7) continue;
        const uint64_t row = v.nbytes() / v.shape[0];
        const auto* last =
            static_cast<const uint8_t*>(v.data) + (v.shape[0] - 1) * row;
        EXPECT_TRUE(std::all_of(last, last + row, [](uint8_t b) {
          return b == 0x5A;
        })) << name;
        ++padded;
      }
      EXPECT_EQ(reports_[r].shadow_bytes, bytes);
      EXPECT_EQ(world_->rank(r).partial_tensors().size(), 0u);
    }
    EXPECT_EQ(padded > 0, padding);
  }
}

// A CUDA destination tensor (a fake view: refused before any use) fails an
// atomic refit on every rank, naming the rank and the tensor.
TEST_F(SwapVerifyTest, AnAtomicRefitRefusesCudaDestinations) {
  const std::string name = DstNames(1)[0];
  dst_models_[1].tensors.at(name).memory = MemoryKind::kCuda;
  FillDst(0x5A);
  const auto before = DstBytes();
  for (const Status& st : RefitAll(Atomic(VerifyMode::kNone))) {
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
    EXPECT_EQ(st.message(), "rank 1: destination tensor " + name +
                                ": atomic needs host memory, not cuda");
  }
  EXPECT_TRUE(DstBytes() == before);
  EXPECT_EQ(world_->rank(0).weight_version(), 0u);
}

TEST_F(SwapVerifyTest, RanksMustAgreeOnAtomic) {
  std::vector<SwapOptions> options = All(VerifyMode::kNone);
  options[3].atomic = true;
  for (const Status& st : RefitAll(options)) {
    EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.ToString();
    EXPECT_THAT(st.message(), HasSubstr("atomic"));
  }
}

}  // namespace
}  // namespace refit::exec
