// The device kernels against the CPU kernels, byte for byte, on a GPU (CTest
// label `gpu`; "skipped: no CUDA device" where there is none).
#include "refit/cuda/device_kernels.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "refit/core/quant/float_cast.h"
#include "refit/cuda/cuda_check.h"

namespace refit::cuda {
namespace {

class DeviceKernelsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
  }
  void TearDown() override {
    for (void* p : buffers_) cudaFree(p);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  void* Device(const std::vector<std::byte>& host) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(host.size(), 1)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p, host.data(), host.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    buffers_.push_back(p);
    return p;
  }
  std::vector<std::byte> Host(const void* p, size_t bytes) {
    std::vector<std::byte> out(bytes);
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out.data(), p, bytes, cudaMemcpyDeviceToHost),
              cudaSuccess);
    return out;
  }
  cudaStream_t stream_ = nullptr;
  std::vector<void*> buffers_;
};

std::vector<std::byte> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

TEST_F(DeviceKernelsTest, CastsMatchCastBuffer) {
  const DType kinds[] = {DType::kF32, DType::kBF16, DType::kF16};
  for (DType from : kinds) {
    for (DType to : kinds) {
      const int64_t n = 1 << 20;
      const auto in = RandomBytes(n * DTypeSize(from), 3);
      std::vector<std::byte> want(n * DTypeSize(to));
      ASSERT_TRUE(quant::CastBuffer(in, from, want, to).ok());
      const std::vector<std::byte> zeros(want.size());
      void* out = Device(zeros);
      ASSERT_TRUE(CastDevice(Device(in), from, out, to, n, stream_).ok());
      EXPECT_EQ(Host(out, want.size()), want)
          << DTypeName(from) << " -> " << DTypeName(to);
    }
  }
}

TEST_F(DeviceKernelsTest, BlockFp8MatchesQuantizeBlockFp8) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (auto format :
         {quant::BlockScaleFormat::kF32, quant::BlockScaleFormat::kUe8m0}) {
      const int64_t n = 300, k = 257;
      std::vector<float> x(n * k);
      for (float& v : x) v = normal(rng);
      std::vector<std::byte> in(n * k * DTypeSize(dtype));
      std::vector<std::byte> f32(n * k * 4);
      std::memcpy(f32.data(), x.data(), f32.size());
      ASSERT_TRUE(quant::CastBuffer(f32, DType::kF32, in, dtype).ok());
      quant::BlockFp8Options o;
      o.scale_format = format;
      const int64_t scales = 3 * 3;
      std::vector<std::byte> want_data(n * k), want_scale(scales * 4);
      ASSERT_TRUE(
          quant::QuantizeBlockFp8(in, dtype, n, k, o, want_data, want_scale)
              .ok());
      void* data = Device(std::vector<std::byte>(n * k));
      void* scale = Device(std::vector<std::byte>(scales * 4));
      ASSERT_TRUE(QuantizeBlockFp8Device(Device(in), dtype, n, k, o, data,
                                         scale, stream_)
                      .ok());
      EXPECT_EQ(Host(data, n * k), want_data);
      EXPECT_EQ(Host(scale, scales * 4), want_scale);
    }
  }
}

TEST_F(DeviceKernelsTest, NonFiniteElementIsNamed) {
  std::vector<float> x(64 * 64, 1.0f);
  x[3 * 64 + 5] = std::numeric_limits<float>::infinity();
  std::vector<std::byte> in(x.size() * 4);
  std::memcpy(in.data(), x.data(), in.size());
  void* data = Device(std::vector<std::byte>(x.size()));
  void* scale = Device(std::vector<std::byte>(4));
  const Status st = QuantizeBlockFp8Device(Device(in), DType::kF32, 64, 64, {},
                                           data, scale, stream_);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("[3, 5]"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace refit::cuda
