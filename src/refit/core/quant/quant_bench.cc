// Single-thread throughput of the refit::quant kernels, each against a memcpy
// of the same input bytes timed in the same run.
//
// Every kernel benchmark alternates, iteration by iteration, a memcpy of the
// kernel's input bytes into a separate buffer and one call of the kernel, and
// times both with a steady clock (the kernel's time is the benchmark's manual
// time). Counters:
//   bytes_per_second  input bytes of the kernel / mean kernel time;
//   memcpy_GBps       input bytes / fastest memcpy;
//   kernel_GBps       input bytes / fastest kernel call;
//   vs_memcpy         fastest memcpy time / fastest kernel time, i.e. kernel
//                     throughput / memcpy throughput of the same bytes (the
//                     goal is >= 0.5);
//   vs_memcpy_med     the same ratio of median times.
// Interleaving keeps both figures under the same machine load and cache
// state; best-of times are robust against other processes on a shared
// machine (medians are given too). BM_MemcpyVsMemcpy calibrates: a memcpy
// timed as the kernel gives vs_memcpy ~ 1.
//
// Tensor: a Kimi-K2 routed-expert weight, [7168, 2048] (BF16: 28 MiB), with
// pseudo-random values of a weight's spread (|x| mostly in 2^-12 .. 2^-4,
// some zeros and subnormal-scale values).
//
//   build-quant/src/refit/core/refit_quant_bench [--benchmark_filter=...]
//   (benchmark_min_time etc. as for any Google Benchmark binary)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <span>
#include <vector>

#include "refit/core/dtype.h"
#include "refit/core/quant/block_fp8.h"
#include "refit/core/quant/float_cast.h"
#include "refit/core/quant/mxfp8.h"
#include "refit/core/quant/scale_swizzle.h"

namespace refit::quant {
namespace {

constexpr int64_t kRows = 7168;
constexpr int64_t kCols = 2048;
constexpr size_t kElems = static_cast<size_t>(kRows * kCols);

using Bytes = std::vector<std::byte>;

// Weight-like F32 values: sign, exponent in roughly [-20, -3], random
// mantissa; about 1 in 1000 is exactly zero.
std::vector<float> WeightLikeF32() {
  std::mt19937_64 rng(42);
  std::vector<float> v(kElems);
  for (float& x : v) {
    const uint64_t r = rng();
    const uint32_t sign = static_cast<uint32_t>(r & 1u) << 31;
    const uint32_t exp = 127 - 3 - static_cast<uint32_t>((r >> 1) % 18);
    const uint32_t man = static_cast<uint32_t>(r >> 20) & 0x7FFFFFu;
    x = (r >> 50) % 1000 == 0 ? 0.0f : F32FromBits(sign | (exp << 23) | man);
  }
  return v;
}

Bytes CastTo(const std::vector<float>& f, DType to) {
  Bytes out(f.size() * DTypeSize(to));
  const std::span<const std::byte> in(
      reinterpret_cast<const std::byte*>(f.data()), f.size() * 4);
  if (!CastBuffer(in, DType::kF32, out, to).ok()) std::abort();
  return out;
}

// Inputs shared by all benchmarks, built once.
struct Inputs {
  Bytes f32, bf16, f16;
  Bytes fp8_data, fp8_scale_inv;  // block FP8 of the BF16 tensor
  Bytes mx_data, mx_scales;       // MXFP8 of the BF16 tensor
};

const Inputs& GetInputs() {
  static const Inputs* inputs = [] {
    auto* in = new Inputs;
    const std::vector<float> f = WeightLikeF32();
    in->f32 = CastTo(f, DType::kF32);
    in->bf16 = CastTo(f, DType::kBF16);
    in->f16 = CastTo(f, DType::kF16);
    const GridShape grid = BlockGrid(kRows, kCols, BlockShape{});
    in->fp8_data.resize(kElems);
    in->fp8_scale_inv.resize(static_cast<size_t>(grid.count() * 4));
    if (!QuantizeBlockFp8(in->bf16, DType::kBF16, kRows, kCols, {},
                          in->fp8_data, in->fp8_scale_inv)
             .ok()) {
      std::abort();
    }
    in->mx_data.resize(kElems);
    in->mx_scales.resize(kElems / kMxfp8BlockSize);
    if (!QuantizeMxfp8(in->bf16, DType::kBF16, kRows, kCols, in->mx_data,
                       in->mx_scales)
             .ok()) {
      std::abort();
    }
    return in;
  }();
  return *inputs;
}

double Seconds(std::chrono::steady_clock::time_point a,
               std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Runs `kernel` (which returns true on success) against a memcpy of `input`,
// interleaved, and sets the counters described at the top of the file.
template <typename Kernel>
void RunAgainstMemcpy(benchmark::State& state, std::span<const std::byte> input,
                      Kernel kernel) {
  Bytes copy(input.size(), std::byte{1});
  std::vector<double> memcpy_s, kernel_s;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(copy.data(), input.data(), input.size());
    benchmark::ClobberMemory();
    const auto t1 = std::chrono::steady_clock::now();
    if (!kernel()) {
      state.SkipWithError("kernel failed");
      break;
    }
    benchmark::ClobberMemory();
    const auto t2 = std::chrono::steady_clock::now();
    memcpy_s.push_back(Seconds(t0, t1));
    kernel_s.push_back(Seconds(t1, t2));
    state.SetIterationTime(Seconds(t1, t2));
  }
  if (kernel_s.empty()) return;
  const double bytes = static_cast<double>(input.size());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(input.size()));
  const double m = *std::min_element(memcpy_s.begin(), memcpy_s.end());
  const double k = *std::min_element(kernel_s.begin(), kernel_s.end());
  state.counters["memcpy_GBps"] = bytes / m / 1e9;
  state.counters["kernel_GBps"] = bytes / k / 1e9;
  state.counters["vs_memcpy"] = m / k;
  state.counters["vs_memcpy_med"] = Median(memcpy_s) / Median(kernel_s);
}

// memcpy alone: the baseline's absolute figure (not interleaved).
void BM_Memcpy(benchmark::State& state) {
  const Bytes& in = GetInputs().bf16;
  Bytes out(in.size(), std::byte{1});
  for (auto _ : state) {
    std::memcpy(out.data(), in.data(), in.size());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(in.size()));
}

// Calibration: a second memcpy as the "kernel" (vs_memcpy should be ~1).
void BM_MemcpyVsMemcpy(benchmark::State& state) {
  const Bytes& in = GetInputs().bf16;
  Bytes out(in.size(), std::byte{1});
  RunAgainstMemcpy(state, in, [&] {
    std::memcpy(out.data(), in.data(), in.size());
    return true;
  });
}

const Bytes& InputOf(DType d) {
  const Inputs& in = GetInputs();
  return d == DType::kF32 ? in.f32 : d == DType::kBF16 ? in.bf16 : in.f16;
}

void BM_Cast(benchmark::State& state, DType from, DType to) {
  const Bytes& in = InputOf(from);
  Bytes out(kElems * DTypeSize(to), std::byte{1});
  RunAgainstMemcpy(state, in,
                   [&] { return CastBuffer(in, from, out, to).ok(); });
}

void BM_QuantizeBlockFp8(benchmark::State& state, DType from,
                         BlockScaleFormat format) {
  const Bytes& in = InputOf(from);
  const GridShape grid = BlockGrid(kRows, kCols, BlockShape{});
  Bytes data(kElems, std::byte{1});
  Bytes scale_inv(static_cast<size_t>(grid.count() * 4), std::byte{1});
  BlockFp8Options options;
  options.scale_format = format;
  RunAgainstMemcpy(state, in, [&] {
    return QuantizeBlockFp8(in, from, kRows, kCols, options, data, scale_inv)
        .ok();
  });
}

void BM_DequantizeBlockFp8(benchmark::State& state, DType to) {
  const Inputs& in = GetInputs();
  Bytes out(kElems * DTypeSize(to), std::byte{1});
  RunAgainstMemcpy(state, in.fp8_data, [&] {
    return DequantizeBlockFp8(in.fp8_data, in.fp8_scale_inv, kRows, kCols,
                              BlockShape{}, out, to)
        .ok();
  });
}

void BM_QuantizeMxfp8(benchmark::State& state, DType from) {
  const Bytes& in = InputOf(from);
  Bytes data(kElems, std::byte{1});
  Bytes scales(kElems / kMxfp8BlockSize, std::byte{1});
  RunAgainstMemcpy(state, in, [&] {
    return QuantizeMxfp8(in, from, kRows, kCols, data, scales).ok();
  });
}

void BM_DequantizeMxfp8(benchmark::State& state, DType to) {
  const Inputs& in = GetInputs();
  Bytes out(kElems * DTypeSize(to), std::byte{1});
  RunAgainstMemcpy(state, in.mx_data, [&] {
    return DequantizeMxfp8(in.mx_data, in.mx_scales, kRows, kCols, out, to)
        .ok();
  });
}

// The MXFP8 scales of the tensor, [7168, 64] bytes.
void BM_Swizzle128x4(benchmark::State& state) {
  const Inputs& in = GetInputs();
  const int64_t cols = kCols / kMxfp8BlockSize;
  Bytes out(static_cast<size_t>(Swizzled128x4Bytes(kRows, cols)), std::byte{1});
  RunAgainstMemcpy(state, in.mx_scales, [&] {
    return Swizzle128x4(in.mx_scales, kRows, cols, out).ok();
  });
}

void BM_Unswizzle128x4(benchmark::State& state) {
  const Inputs& in = GetInputs();
  const int64_t cols = kCols / kMxfp8BlockSize;
  Bytes swizzled(static_cast<size_t>(Swizzled128x4Bytes(kRows, cols)));
  if (!Swizzle128x4(in.mx_scales, kRows, cols, swizzled).ok()) std::abort();
  Bytes out(in.mx_scales.size(), std::byte{1});
  RunAgainstMemcpy(state, swizzled, [&] {
    return Unswizzle128x4(swizzled, kRows, cols, out).ok();
  });
}

#define REFIT_QUANT_BENCH(...) \
  BENCHMARK_CAPTURE(__VA_ARGS__)->UseManualTime()->Unit(benchmark::kMillisecond)

BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MemcpyVsMemcpy)->UseManualTime()->Unit(benchmark::kMillisecond);
REFIT_QUANT_BENCH(BM_Cast, F32_to_BF16, DType::kF32, DType::kBF16);
REFIT_QUANT_BENCH(BM_Cast, BF16_to_F32, DType::kBF16, DType::kF32);
REFIT_QUANT_BENCH(BM_Cast, BF16_to_F16, DType::kBF16, DType::kF16);
REFIT_QUANT_BENCH(BM_Cast, F32_to_F16, DType::kF32, DType::kF16);
REFIT_QUANT_BENCH(BM_Cast, F16_to_F32, DType::kF16, DType::kF32);
REFIT_QUANT_BENCH(BM_Cast, F16_to_BF16, DType::kF16, DType::kBF16);
REFIT_QUANT_BENCH(BM_QuantizeBlockFp8, BF16_F32scale, DType::kBF16,
                  BlockScaleFormat::kF32);
REFIT_QUANT_BENCH(BM_QuantizeBlockFp8, BF16_UE8M0, DType::kBF16,
                  BlockScaleFormat::kUe8m0);
REFIT_QUANT_BENCH(BM_QuantizeBlockFp8, F32_F32scale, DType::kF32,
                  BlockScaleFormat::kF32);
REFIT_QUANT_BENCH(BM_QuantizeBlockFp8, F16_F32scale, DType::kF16,
                  BlockScaleFormat::kF32);
REFIT_QUANT_BENCH(BM_DequantizeBlockFp8, to_BF16, DType::kBF16);
REFIT_QUANT_BENCH(BM_DequantizeBlockFp8, to_F32, DType::kF32);
REFIT_QUANT_BENCH(BM_QuantizeMxfp8, BF16, DType::kBF16);
REFIT_QUANT_BENCH(BM_QuantizeMxfp8, F32, DType::kF32);
REFIT_QUANT_BENCH(BM_DequantizeMxfp8, to_BF16, DType::kBF16);
REFIT_QUANT_BENCH(BM_DequantizeMxfp8, to_F32, DType::kF32);
BENCHMARK(BM_Swizzle128x4)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Unswizzle128x4)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace refit::quant

BENCHMARK_MAIN();
