// The device kernels against the CPU kernels, byte for byte, on a GPU (CTest
// label `gpu`; "skipped: no CUDA device" where there is none).
#include "refit/cuda/device_kernels.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "refit/core/quant/float_cast.h"
#include "refit/core/quant/mxfp8.h"
#include "refit/core/quant/scale_swizzle.h"
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

// Strided rows (the format transform's column pieces): each row cast as
// CastBuffer casts it, the bytes between rows untouched.
TEST_F(DeviceKernelsTest, Cast2DCastsEveryRowAndNothingBetween) {
  const int64_t rows = 37, cols = 100, in_cols = 130, out_cols = 110;
  for (auto [from, to] : {std::pair{DType::kBF16, DType::kF16},
                          {DType::kF32, DType::kBF16},
                          {DType::kBF16, DType::kBF16}}) {
    const uint64_t ei = DTypeSize(from), eo = DTypeSize(to);
    const auto in = RandomBytes(rows * in_cols * ei, 11);
    std::vector<std::byte> want(rows * out_cols * eo);
    for (int64_t r = 0; r < rows; ++r) {
      ASSERT_TRUE(
          quant::CastBuffer({in.data() + r * in_cols * ei, cols * ei}, from,
                            {want.data() + r * out_cols * eo, cols * eo}, to)
              .ok());
    }
    void* out = Device(std::vector<std::byte>(want.size()));
    ASSERT_TRUE(Cast2DDevice(Device(in), in_cols * ei, from, out, out_cols * eo,
                             to, cols, rows, stream_)
                    .ok());
    EXPECT_EQ(Host(out, want.size()), want)
        << DTypeName(from) << " -> " << DTypeName(to);
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

// Two non-finite elements: the CPU names the first of the first block in
// block order ([5, 3] in block (0, 0)), not the first in row-major order
// ([0, 200] in block (0, 1)); so does the device.
TEST_F(DeviceKernelsTest, NonFiniteElementIsTheOneTheCpuNames) {
  const int64_t n = 8, k = 256;
  std::vector<float> x(n * k, 1.0f);
  x[5 * k + 3] = std::numeric_limits<float>::quiet_NaN();
  x[0 * k + 200] = std::numeric_limits<float>::infinity();
  std::vector<std::byte> in(x.size() * 4);
  std::memcpy(in.data(), x.data(), in.size());
  std::vector<std::byte> cpu_data(n * k), cpu_scale(2 * 4);
  const Status cpu =
      quant::QuantizeBlockFp8(in, DType::kF32, n, k, {}, cpu_data, cpu_scale);
  ASSERT_NE(cpu.message().find("[5, 3]"), std::string::npos) << cpu.message();
  void* data = Device(std::vector<std::byte>(n * k));
  void* scale = Device(std::vector<std::byte>(2 * 4));
  const Status st = QuantizeBlockFp8Device(Device(in), DType::kF32, n, k, {},
                                           data, scale, stream_);
  EXPECT_NE(st.message().find("[5, 3]"), std::string::npos) << st.message();
}

// More block rows than a grid's y extent takes (65535): 16 x 16 blocks over
// 65536 * 16 + 5 rows.
TEST_F(DeviceKernelsTest, BlockFp8TakesMoreThan65535BlockRows) {
  const int64_t n = 65536 * 16 + 5, k = 40;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n * k);
  for (float& v : x) v = normal(rng);
  std::vector<std::byte> in(x.size() * 4);
  std::memcpy(in.data(), x.data(), in.size());
  quant::BlockFp8Options o;
  o.block = {16, 16};
  const int64_t scales = (n + 15) / 16 * 3;
  std::vector<std::byte> want_data(n * k), want_scale(scales * 4);
  ASSERT_TRUE(
      quant::QuantizeBlockFp8(in, DType::kF32, n, k, o, want_data, want_scale)
          .ok());
  void* data = Device(std::vector<std::byte>(n * k));
  void* scale = Device(std::vector<std::byte>(scales * 4));
  ASSERT_TRUE(QuantizeBlockFp8Device(Device(in), DType::kF32, n, k, o, data,
                                     scale, stream_)
                  .ok());
  EXPECT_EQ(Host(data, n * k), want_data);
  EXPECT_EQ(Host(scale, scales * 4), want_scale);
}

TEST_F(DeviceKernelsTest, MisalignedInputIsRefusedNotFaulted) {
  void* in = Device(std::vector<std::byte>(64 * 64 * 2 + 2));
  void* data = Device(std::vector<std::byte>(64 * 64));
  void* scale = Device(std::vector<std::byte>(4));
  const auto* odd = static_cast<const std::byte*>(in) + 1;
  EXPECT_EQ(QuantizeBlockFp8Device(odd, DType::kBF16, 64, 64, {}, data, scale,
                                   stream_)
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      CastDevice(odd, DType::kBF16, data, DType::kF16, 64, stream_).code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
}

// Rows of normal values over magnitudes from 2^-30 to 2^20, a zero row and a
// row of subnormal-scale values, as `dtype`.
std::vector<std::byte> Mxfp8Input(int64_t m, int64_t k, DType dtype,
                                  uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(m * k);
  for (int64_t r = 0; r < m; ++r) {
    const float mag = r == 1 ? 0.0f
                      : r == 2
                          ? 1e-40f
                          : std::ldexp(1.0f, static_cast<int>(r % 51) - 30);
    for (int64_t c = 0; c < k; ++c) x[r * k + c] = normal(rng) * mag;
  }
  x[5 * k + 7] = 448.0f;  // a block whose scale is exactly 1
  x[6 * k + 9] = -464.0f;
  std::vector<std::byte> f32(x.size() * 4), in(x.size() * DTypeSize(dtype));
  std::memcpy(f32.data(), x.data(), f32.size());
  EXPECT_TRUE(quant::CastBuffer(f32, DType::kF32, in, dtype).ok());
  return in;
}

TEST_F(DeviceKernelsTest, Mxfp8MatchesQuantizeMxfp8) {
  // 300 rows (not a multiple of 128), 7 scale columns (not a multiple of 4),
  // and a larger shape that fills many thread blocks.
  for (auto [m, k] : {std::pair<int64_t, int64_t>{300, 224}, {1024, 4096}}) {
    const int64_t cols = k / 32;
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      const auto in = Mxfp8Input(m, k, dtype, static_cast<uint32_t>(m + k));
      std::vector<std::byte> want_data(m * k), want_scales(m * cols);
      ASSERT_TRUE(
          quant::QuantizeMxfp8(in, dtype, m, k, want_data, want_scales).ok());
      std::vector<std::byte> want_swizzled(quant::Swizzled128x4Bytes(m, cols));
      ASSERT_TRUE(
          quant::Swizzle128x4(want_scales, m, cols, want_swizzled).ok());
      void* dev_in = Device(in);
      for (bool swizzled : {false, true}) {
        const std::vector<std::byte>& want =
            swizzled ? want_swizzled : want_scales;
        // Non-zero garbage: the padding must be written as 0.
        void* data = Device(std::vector<std::byte>(m * k, std::byte{0xA5}));
        void* scales =
            Device(std::vector<std::byte>(want.size(), std::byte{0xA5}));
        const Status st = QuantizeMxfp8Device(dev_in, dtype, m, k, data, scales,
                                              swizzled, stream_);
        ASSERT_TRUE(st.ok()) << st.message();
        EXPECT_EQ(Host(data, m * k), want_data)
            << DTypeName(dtype) << " [" << m << ", " << k << "]";
        EXPECT_EQ(Host(scales, want.size()), want)
            << DTypeName(dtype) << " [" << m << ", " << k
            << "] swizzled=" << swizzled;
      }
    }
  }
}

TEST_F(DeviceKernelsTest, Mxfp8NonFiniteElementIsNamed) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    std::vector<float> x(64 * 64, 1.0f);
    x[3 * 64 + 37] = -std::numeric_limits<float>::infinity();
    x[3 * 64 + 5] = std::numeric_limits<float>::quiet_NaN();
    x[9 * 64 + 1] = std::numeric_limits<float>::infinity();
    std::vector<std::byte> f32(x.size() * 4), in(x.size() * DTypeSize(dtype));
    std::memcpy(f32.data(), x.data(), f32.size());
    ASSERT_TRUE(quant::CastBuffer(f32, DType::kF32, in, dtype).ok());
    void* data = Device(std::vector<std::byte>(x.size()));
    void* scales = Device(std::vector<std::byte>(64 * 2));
    const Status st = QuantizeMxfp8Device(Device(in), dtype, 64, 64, data,
                                          scales, false, stream_);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << DTypeName(dtype);
    EXPECT_NE(st.message().find("[3, 5]"), std::string::npos) << st.message();
  }
}

TEST_F(DeviceKernelsTest, Mxfp8RejectsBadArguments) {
  void* in = Device(std::vector<std::byte>(64 * 64 * 4));
  void* data = Device(std::vector<std::byte>(64 * 64));
  void* scales = Device(std::vector<std::byte>(128 * 4));
  Status st = QuantizeMxfp8Device(in, DType::kF32, 64, 48, data, scales, false,
                                  stream_);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("48"), std::string::npos) << st.message();
  st = QuantizeMxfp8Device(in, DType::kF8E4M3, 64, 64, data, scales, false,
                           stream_);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  st =
      QuantizeMxfp8Device(in, DType::kF32, -1, 64, data, scales, true, stream_);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  st = QuantizeMxfp8Device(static_cast<std::byte*>(in) + 2, DType::kF32, 1, 32,
                           data, scales, false, stream_);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(
      QuantizeMxfp8Device(in, DType::kF32, 0, 64, data, scales, true, stream_)
          .ok());
}

}  // namespace
}  // namespace refit::cuda
