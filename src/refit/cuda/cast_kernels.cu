// CastDevice: one thread per element, conversions from device_math.h.
#include <string>

#include "refit/cuda/cuda_check.h"
#include "refit/cuda/device_kernels.h"
#include "refit/cuda/device_math.h"

namespace refit::cuda {

namespace {

constexpr int kThreads = 256;

__device__ uint32_t LoadBits(const void* p, int64_t i, int size) {
  if (size == 4) return static_cast<const uint32_t*>(p)[i];
  return static_cast<const uint16_t*>(p)[i];
}

__device__ void StoreBits(void* p, int64_t i, int size, uint32_t bits) {
  if (size == 4) {
    static_cast<uint32_t*>(p)[i] = bits;
  } else {
    static_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(bits);
  }
}

__global__ void CastKernel(const void* in, DType in_dtype, int in_size,
                           void* out, DType out_dtype, int out_size,
                           int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float f = WideToF32(LoadBits(in, i, in_size), in_dtype);
    StoreBits(out, i, out_size, F32ToWide(f, out_dtype));
  }
}

bool IsWide(DType d) {
  return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16;
}

}  // namespace

Status CastDevice(const void* in, DType in_dtype, void* out, DType out_dtype,
                  int64_t n, cudaStream_t stream) {
  if (!IsWide(in_dtype) || !IsWide(out_dtype)) {
    return InvalidArgument("CastDevice: unsupported dtype pair " +
                           std::string(DTypeName(in_dtype)) + " -> " +
                           std::string(DTypeName(out_dtype)) +
                           " (supported: F32, BF16, F16)");
  }
  if (n <= 0) return OkStatus();
  if (in_dtype == out_dtype) {
    REFIT_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(out, in, n * DTypeSize(in_dtype),
                        cudaMemcpyDeviceToDevice, stream),
        "CastDevice copy");
    return OkStatus();
  }
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads,
                                           int64_t{1} << 16);
  CastKernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      in, in_dtype, static_cast<int>(DTypeSize(in_dtype)), out, out_dtype,
      static_cast<int>(DTypeSize(out_dtype)), n);
  REFIT_CUDA_RETURN_IF_ERROR(cudaGetLastError(), "CastDevice launch");
  return OkStatus();
}

}  // namespace refit::cuda
