// The device kernels' per-element arithmetic (device_math.h), run on the
// host, against the CPU kernels: bit for bit, every BF16 / F16 value and
// random F32 bit patterns; block FP8 over random shapes, dtypes and options.
#include "refit/cuda/device_math.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "refit/core/quant/block_fp8.h"

namespace refit::cuda {
namespace {

std::vector<std::byte> Bytes(const std::vector<uint32_t>& bits, DType d) {
  const size_t size = DTypeSize(d);
  std::vector<std::byte> out(bits.size() * size);
  for (size_t i = 0; i < bits.size(); ++i) {
    std::memcpy(out.data() + i * size, &bits[i], size);  // little-endian
  }
  return out;
}

// Every 16-bit pattern, or random and special F32 patterns.
std::vector<uint32_t> Inputs(DType d) {
  std::vector<uint32_t> v;
  if (d != DType::kF32) {
    for (uint32_t i = 0; i < 65536; ++i) v.push_back(i);
    return v;
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 1 << 20; ++i) v.push_back(rng());
  for (uint32_t s : {0u, 0x80000000u}) {
    for (uint32_t m : {0x0u, 0x1u, 0x7FFFu, 0x8000u, 0x7FFFFFu, 0x400000u}) {
      for (uint32_t e : {0x0u, 0x1u, 0x70u, 0x71u, 0x8Fu, 0xFEu, 0xFFu}) {
        v.push_back(s | (e << 23) | m);
      }
    }
  }
  return v;
}

class CastTest : public ::testing::TestWithParam<std::pair<DType, DType>> {};

TEST_P(CastTest, MatchesCastBufferBitForBit) {
  const auto [from, to] = GetParam();
  const std::vector<uint32_t> in = Inputs(from);
  const std::vector<std::byte> in_bytes = Bytes(in, from);
  std::vector<std::byte> want(in.size() * DTypeSize(to));
  ASSERT_TRUE(quant::CastBuffer(in_bytes, from, want, to).ok());
  std::vector<uint32_t> got(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    got[i] = F32ToWide(WideToF32(in[i], from), to);
  }
  const std::vector<std::byte> got_bytes = Bytes(got, to);
  for (size_t i = 0; i < in.size(); ++i) {
    ASSERT_EQ(std::memcmp(got_bytes.data() + i * DTypeSize(to),
                          want.data() + i * DTypeSize(to), DTypeSize(to)),
              0)
        << DTypeName(from) << " -> " << DTypeName(to) << " of 0x" << std::hex
        << in[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Device, CastTest,
                         ::testing::Values(std::pair{DType::kF32, DType::kBF16},
                                           std::pair{DType::kF32, DType::kF16},
                                           std::pair{DType::kBF16, DType::kF32},
                                           std::pair{DType::kBF16, DType::kF16},
                                           std::pair{DType::kF16, DType::kF32},
                                           std::pair{DType::kF16,
                                                     DType::kBF16}));

// The device kernel's algorithm on the host: per block, amax by max, the
// scale, then every element.
void QuantizeLikeTheKernel(const std::vector<float>& x, int64_t n, int64_t k,
                           const quant::BlockFp8Options& o,
                           std::vector<uint8_t>& data,
                           std::vector<float>& scale) {
  const int64_t br = o.block.rows, bc = o.block.cols;
  const int64_t gc = (k + bc - 1) / bc, gr = (n + br - 1) / br;
  data.assign(n * k, 0);
  scale.assign(gr * gc, 0.0f);
  for (int64_t R = 0; R < gr; ++R) {
    for (int64_t C = 0; C < gc; ++C) {
      float amax = 0.0f;
      for (int64_t r = R * br; r < std::min(n, (R + 1) * br); ++r) {
        for (int64_t c = C * bc; c < std::min(k, (C + 1) * bc); ++c) {
          amax = std::fmax(amax, std::fabs(x[r * k + c]));
        }
      }
      const float s = BlockScaleInv(
          amax, o.min_amax, o.scale_format == quant::BlockScaleFormat::kUe8m0);
      scale[R * gc + C] = s;
      for (int64_t r = R * br; r < std::min(n, (R + 1) * br); ++r) {
        for (int64_t c = C * bc; c < std::min(k, (C + 1) * bc); ++c) {
          data[r * k + c] = QuantizeE4M3(x[r * k + c], s);
        }
      }
    }
  }
}

TEST(DeviceMathTest, BlockFp8MatchesQuantizeBlockFp8) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 24; ++trial) {
    const int64_t n = 1 + rng() % 300, k = 1 + rng() % 300;
    const DType dtype =
        std::vector{DType::kF32, DType::kBF16, DType::kF16}[trial % 3];
    quant::BlockFp8Options o;
    if (trial % 4 == 1) o.block = {32, 64};
    if (trial % 2) o.scale_format = quant::BlockScaleFormat::kUe8m0;
    if (trial % 5 == 0) o.min_amax = 1e-4f;
    // Values spanning magnitudes, some blocks all zero or tiny.
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<uint32_t> bits(n * k);
    std::vector<float> x(n * k);
    const float mag = std::ldexp(1.0f, static_cast<int>(rng() % 40) - 30);
    for (int64_t i = 0; i < n * k; ++i) {
      const float v =
          (trial % 7 == 3 && i < n * k / 2) ? 0.0f : normal(rng) * mag;
      bits[i] = F32ToWide(v, dtype);
      x[i] = WideToF32(bits[i], dtype);
    }
    std::vector<std::byte> want_data(n * k);
    std::vector<std::byte> want_scale(((n + o.block.rows - 1) / o.block.rows) *
                                      ((k + o.block.cols - 1) / o.block.cols) *
                                      4);
    ASSERT_TRUE(quant::QuantizeBlockFp8(Bytes(bits, dtype), dtype, n, k, o,
                                        want_data, want_scale)
                    .ok());
    std::vector<uint8_t> data;
    std::vector<float> scale;
    QuantizeLikeTheKernel(x, n, k, o, data, scale);
    ASSERT_EQ(std::memcmp(data.data(), want_data.data(), data.size()), 0)
        << "trial " << trial << " [" << n << ", " << k << "]";
    ASSERT_EQ(std::memcmp(scale.data(), want_scale.data(), want_scale.size()),
              0)
        << "trial " << trial;
  }
}

}  // namespace
}  // namespace refit::cuda
