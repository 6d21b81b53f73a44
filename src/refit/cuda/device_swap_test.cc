// SwapModelWeights over a LocalWorld of CUDA memory (LocalWorldOptions::
// memory = kCuda): on a GPU, the same bytes as the host refit of the same
// tensors; without one, every rank fails with an error that says so.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "refit/core/test_models.h"
#include "refit/cuda/cuda_check.h"
#include "refit/local_world.h"
#include "refit/swap.h"

namespace refit {
namespace {

constexpr int kWorld = 4;

// One rank's tensors of a layout: host bytes, and optionally device copies.
struct Side {
  ShardedModel model;
  std::vector<std::vector<std::byte>> host;
  std::vector<void*> device;
};

// Random bytes; BF16 tensors hold finite values in [-4, 4) (quantisable).
void FillRandom(std::vector<std::byte>& bytes, DType dtype, std::mt19937& rng) {
  if (dtype != DType::kBF16) {
    for (auto& b : bytes) b = static_cast<std::byte>(rng());
    return;
  }
  std::uniform_real_distribution<float> value(-4.0f, 4.0f);
  for (size_t i = 0; i + 1 < bytes.size(); i += 2) {
    const float f = value(rng);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    const uint16_t top = static_cast<uint16_t>(bits >> 16);
    std::memcpy(&bytes[i], &top, 2);
  }
}

// One rank's tensors of `layout` (destination tensors in the formats of
// `transform` when given).
Side MakeSide(std::shared_ptr<const ModelSpec> spec, const char* layout,
              int rank, uint32_t seed, bool on_device,
              const PrecisionOptions* transform = nullptr) {
  Side s{{spec, *ParseParallelConfig(layout), rank, kWorld, {}}, {}, {}};
  std::mt19937 rng(seed);
  auto shapes = ShardShapes(*spec, s.model.layout, rank, kWorld, transform);
  EXPECT_TRUE(shapes.ok()) << shapes.status().ToString();
  for (const ShardShape& t : *shapes) {
    TensorView v{nullptr, t.dtype, t.shape, {}, MemoryKind::kHost};
    auto& bytes = s.host.emplace_back(v.nbytes());
    FillRandom(bytes, t.dtype, rng);
    v.data = bytes.data();
    if (on_device) {
      void* d = nullptr;
      EXPECT_EQ(cudaMalloc(&d, bytes.size()), cudaSuccess);
      EXPECT_EQ(
          cudaMemcpy(d, bytes.data(), bytes.size(), cudaMemcpyHostToDevice),
          cudaSuccess);
      s.device.push_back(d);
      v.data = d;
      v.memory = MemoryKind::kCuda;
    }
    s.model.tensors[t.name] = v;
  }
  return s;
}

std::vector<std::vector<std::byte>> DeviceBytes(const Side& s) {
  std::vector<std::vector<std::byte>> out;
  for (size_t i = 0; i < s.device.size(); ++i) {
    auto& bytes = out.emplace_back(s.host[i].size());
    EXPECT_EQ(cudaMemcpy(bytes.data(), s.device[i], bytes.size(),
                         cudaMemcpyDeviceToHost),
              cudaSuccess);
  }
  return out;
}

class DeviceSwapTest : public ::testing::Test {
 protected:
  std::shared_ptr<const ModelSpec> spec_ = std::make_shared<const ModelSpec>(
      testing::MustSpec(testing::Qwen3Config(2, 4, "bfloat16")));

  // Refits tp=2,ep=2 -> tp=1,ep=4 with `options` on host tensors and on
  // device copies of the same bytes; the device result must equal the host's.
  void ExpectDeviceRefitEqualsHostRefit(const SwapOptions& options) {
    const PrecisionOptions* t =
        options.transform ? &*options.transform : nullptr;
    std::vector<Side> src, host_dst, dev_src, dev_dst;
    for (int r = 0; r < kWorld; ++r) {
      src.push_back(MakeSide(spec_, "tp=2,ep=2", r, 100 + r, false));
      host_dst.push_back(MakeSide(spec_, "tp=1,ep=4", r, 200 + r, false, t));
      dev_src.push_back(MakeSide(spec_, "tp=2,ep=2", r, 100 + r, true));
      dev_dst.push_back(MakeSide(spec_, "tp=1,ep=4", r, 200 + r, true, t));
    }
    LocalWorld host(kWorld);
    LocalWorld device(kWorld, {std::chrono::seconds(60), MemoryKind::kCuda});
    for (const Status& st : host.ForEachRank([&](int r) {
           return SwapModelWeights(&src[r].model, &host_dst[r].model,
                                   host.rank(r), options)
               .status();
         })) {
      EXPECT_TRUE(st.ok()) << st.ToString();
    }
    for (const Status& st : device.ForEachRank([&](int r) {
           return SwapModelWeights(&dev_src[r].model, &dev_dst[r].model,
                                   device.rank(r), options)
               .status();
         })) {
      EXPECT_TRUE(st.ok()) << st.ToString();
    }
    for (int r = 0; r < kWorld; ++r) {
      EXPECT_EQ(DeviceBytes(dev_dst[r]), host_dst[r].host) << "rank " << r;
    }
    for (auto* side : {&dev_src, &dev_dst}) {
      for (Side& s : *side) {
        for (void* d : s.device) cudaFree(d);
      }
    }
  }
};

TEST_F(DeviceSwapTest, MatchesTheHostRefit) {
  if (cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  ExpectDeviceRefitEqualsHostRefit({});
}

TEST_F(DeviceSwapTest, WithoutADeviceEveryRankFailsAndSaysWhy) {
  if (cuda::DeviceCount() > 0) GTEST_SKIP() << "a CUDA device is present";
  std::vector<Side> src, dst;
  for (int r = 0; r < kWorld; ++r) {
    src.push_back(MakeSide(spec_, "tp=2,ep=2", r, 1 + r, false));
    dst.push_back(MakeSide(spec_, "tp=1,ep=4", r, 9 + r, false));
  }
  LocalWorld world(kWorld, {std::chrono::seconds(20), MemoryKind::kCuda});
  for (const Status& st : world.ForEachRank([&](int r) {
         return SwapModelWeights(&src[r].model, &dst[r].model, world.rank(r))
             .status();
       })) {
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("cuda"), std::string::npos) << st.message();
  }
  EXPECT_EQ(world.rank(0).weight_version(), 0u);
}

// Casts, block FP8 (on the sender where pieces hold whole blocks, staged on
// the receiver where TP cuts a block) and MXFP8 with swizzled scales, run by
// the device kernels on CUDA tensors: the same bytes as the host refit.
TEST_F(DeviceSwapTest, ConvertedRefitsMatchTheHostRefit) {
  if (cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  for (const char* dtype : {"f32", "fp8-block", "mxfp8"}) {
    SCOPED_TRACE(dtype);
    SwapOptions options;
    options.transform = PrecisionOptions{};
    ASSERT_TRUE(ApplyDstDType(dtype, *options.transform).ok());
    options.transform->fp8.block = {16, 16};
    options.transform->mxfp8_swizzled = true;
    ExpectDeviceRefitEqualsHostRefit(options);
  }
}

// A converting rank runs its kernels on one kind of memory: host sources
// with CUDA destinations are refused by name before any byte moves.
TEST_F(DeviceSwapTest, ATransformOverMixedMemoryIsRefusedBeforeAnyByteMoves) {
  std::vector<Side> src, dst;
  for (int r = 0; r < kWorld; ++r) {
    src.push_back(MakeSide(spec_, "tp=2,ep=2", r, 1 + r, false));
    dst.push_back(MakeSide(spec_, "tp=1,ep=4", r, 9 + r, false));
    // Marked as device memory (never touched: the call is refused first).
    for (auto& [name, view] : dst.back().model.tensors) {
      view.memory = MemoryKind::kCuda;
    }
  }
  SwapOptions options;
  options.transform = PrecisionOptions{};
  ASSERT_TRUE(ApplyDstDType("f32", *options.transform).ok());
  LocalWorld world(kWorld, {std::chrono::seconds(20), MemoryKind::kCuda});
  const auto before = dst[0].host;
  for (const Status& st : world.ForEachRank([&](int r) {
         return SwapModelWeights(&src[r].model, &dst[r].model, world.rank(r),
                                 options)
             .status();
       })) {
    EXPECT_EQ(st.code(), StatusCode::kUnimplemented) << st.ToString();
    EXPECT_NE(st.message().find("rank 0: destination tensor "),
              std::string::npos)
        << st.message();
    EXPECT_NE(st.message().find("converts on one kind of memory per rank"),
              std::string::npos)
        << st.message();
  }
  EXPECT_EQ(dst[0].host, before);
}

}  // namespace
}  // namespace refit
