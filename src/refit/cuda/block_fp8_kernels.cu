// QuantizeBlockFp8Device: one thread block per FP8 block. The block's amax
// is reduced exactly (a max is order-free), its scale and elements computed
// with device_math.h, as quant::QuantizeBlockFp8 does on the CPU.
#include <cmath>
#include <string>

#include "refit/cuda/cuda_check.h"
#include "refit/cuda/device_kernels.h"
#include "refit/cuda/device_math.h"

namespace refit::cuda {

namespace {

constexpr int kThreads = 256;

__device__ float LoadF32(const void* in, DType dtype, int64_t i) {
  const uint32_t bits = dtype == DType::kF32
                            ? static_cast<const uint32_t*>(in)[i]
                            : static_cast<const uint16_t*>(in)[i];
  return WideToF32(bits, dtype);
}

// Grid: (block columns, block rows). `bad` receives the smallest linear index
// of a non-finite element (stays INT64_MAX when there is none).
__global__ void QuantizeKernel(const void* in, DType dtype, int64_t n,
                               int64_t k, int64_t br, int64_t bc,
                               float min_amax, bool ue8m0, uint8_t* data,
                               float* scale_inv, unsigned long long* bad) {
  const int64_t r0 = blockIdx.y * br, c0 = blockIdx.x * bc;
  const int64_t rows = min(br, n - r0), cols = min(bc, k - c0);
  const int64_t count = rows * cols;
  __shared__ float amax_of[kThreads];
  float amax = 0.0f;
  for (int64_t e = threadIdx.x; e < count; e += blockDim.x) {
    const int64_t i = (r0 + e / cols) * k + c0 + e % cols;
    const float x = LoadF32(in, dtype, i);
    if (!isfinite(x)) atomicMin(bad, static_cast<unsigned long long>(i));
    amax = fmaxf(amax, fabsf(x));
  }
  amax_of[threadIdx.x] = amax;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      amax_of[threadIdx.x] =
          fmaxf(amax_of[threadIdx.x], amax_of[threadIdx.x + half]);
    }
    __syncthreads();
  }
  const float s = BlockScaleInv(amax_of[0], min_amax, ue8m0);
  if (threadIdx.x == 0) scale_inv[blockIdx.y * gridDim.x + blockIdx.x] = s;
  for (int64_t e = threadIdx.x; e < count; e += blockDim.x) {
    const int64_t i = (r0 + e / cols) * k + c0 + e % cols;
    data[i] = QuantizeE4M3(LoadF32(in, dtype, i), s);
  }
}

Status CheckArgs(DType dtype, int64_t n, int64_t k,
                 const quant::BlockFp8Options& o) {
  const std::string fn = "QuantizeBlockFp8Device";
  if (n < 0 || k < 0 || o.block.rows <= 0 || o.block.cols <= 0) {
    return InvalidArgument(fn + ": bad shape [" + std::to_string(n) + ", " +
                           std::to_string(k) + "] or block");
  }
  if (!(o.min_amax >= 0.0f) || !std::isfinite(o.min_amax)) {
    return InvalidArgument(fn + ": min_amax must be finite and >= 0");
  }
  if (dtype != DType::kF32 && dtype != DType::kBF16 && dtype != DType::kF16) {
    return InvalidArgument(fn + ": input dtype " +
                           std::string(DTypeName(dtype)) +
                           " is not F32, BF16 or F16");
  }
  return OkStatus();
}

}  // namespace

Status QuantizeBlockFp8Device(const void* in, DType in_dtype, int64_t n,
                              int64_t k, const quant::BlockFp8Options& options,
                              void* data, void* scale_inv,
                              cudaStream_t stream) {
  REFIT_RETURN_IF_ERROR(CheckArgs(in_dtype, n, k, options));
  if (n == 0 || k == 0) return OkStatus();
  const int64_t br = options.block.rows, bc = options.block.cols;
  const dim3 grid(static_cast<unsigned>((k + bc - 1) / bc),
                  static_cast<unsigned>((n + br - 1) / br));
  unsigned long long* bad = nullptr;
  REFIT_CUDA_RETURN_IF_ERROR(cudaMallocAsync(&bad, sizeof(*bad), stream),
                             "QuantizeBlockFp8Device flag");
  const unsigned long long none = ~0ull;
  REFIT_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(bad, &none, sizeof(none), cudaMemcpyHostToDevice,
                      stream),
      "QuantizeBlockFp8Device flag");
  QuantizeKernel<<<grid, kThreads, 0, stream>>>(
      in, in_dtype, n, k, br, bc, options.min_amax,
      options.scale_format == quant::BlockScaleFormat::kUe8m0,
      static_cast<uint8_t*>(data), static_cast<float*>(scale_inv), bad);
  REFIT_CUDA_RETURN_IF_ERROR(cudaGetLastError(), "QuantizeBlockFp8Device");
  unsigned long long first = none;
  REFIT_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(&first, bad, sizeof(first), cudaMemcpyDeviceToHost,
                      stream),
      "QuantizeBlockFp8Device flag");
  REFIT_CUDA_RETURN_IF_ERROR(cudaFreeAsync(bad, stream),
                             "QuantizeBlockFp8Device flag");
  REFIT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream),
                             "QuantizeBlockFp8Device");
  if (first != none) {
    const auto i = static_cast<int64_t>(first);
    return InvalidArgument("QuantizeBlockFp8Device: element [" +
                           std::to_string(i / k) + ", " +
                           std::to_string(i % k) + "] is not finite");
  }
  return OkStatus();
}

}  // namespace refit::cuda
