// CastDevice: one thread per element, conversions from device_math.h.
#include <string>

#include "refit/cuda/copy_rows.h"
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

// Element c of row r sits at byte r * pitch + c * size on either side.
__global__ void CastKernel(const char* in, uint64_t in_pitch, DType in_dtype,
                           int in_size, char* out, uint64_t out_pitch,
                           DType out_dtype, int out_size, int64_t row_elements,
                           int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / row_elements, c = i % row_elements;
    const float f =
        WideToF32(LoadBits(in + r * in_pitch, c, in_size), in_dtype);
    StoreBits(out + r * out_pitch, c, out_size, F32ToWide(f, out_dtype));
  }
}

bool IsWide(DType d) {
  return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16;
}

}  // namespace

Status CastDevice(const void* in, DType in_dtype, void* out, DType out_dtype,
                  int64_t n, cudaStream_t stream) {
  return Cast2DDevice(in, 0, in_dtype, out, 0, out_dtype, n, 1, stream);
}

Status Cast2DDevice(const void* in, uint64_t in_pitch, DType in_dtype,
                    void* out, uint64_t out_pitch, DType out_dtype,
                    int64_t row_elements, int64_t rows, cudaStream_t stream) {
  if (!IsWide(in_dtype) || !IsWide(out_dtype)) {
    return InvalidArgument("CastDevice: unsupported dtype pair " +
                           std::string(DTypeName(in_dtype)) + " -> " +
                           std::string(DTypeName(out_dtype)) +
                           " (supported: F32, BF16, F16)");
  }
  if (row_elements <= 0 || rows <= 0) return OkStatus();
  const uint64_t in_row = row_elements * DTypeSize(in_dtype);
  const uint64_t out_row = row_elements * DTypeSize(out_dtype);
  if (rows == 1) in_pitch = in_row, out_pitch = out_row;
  if (in_pitch % DTypeSize(in_dtype) != 0 ||
      out_pitch % DTypeSize(out_dtype) != 0) {
    return InvalidArgument(
        "CastDevice: row pitches " + std::to_string(in_pitch) + " and " +
        std::to_string(out_pitch) + " bytes are not whole elements");
  }
  if (reinterpret_cast<uintptr_t>(in) % DTypeSize(in_dtype) != 0 ||
      reinterpret_cast<uintptr_t>(out) % DTypeSize(out_dtype) != 0) {
    return InvalidArgument(
        "CastDevice: input or output is not aligned to its element size");
  }
  if (in_dtype == out_dtype) {
    return CopyRowsAsync(out, out_pitch, in, in_pitch, in_row, rows, stream,
                         "CastDevice copy");
  }
  const int64_t n = row_elements * rows;
  const int64_t blocks =
      std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 16);
  CastKernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const char*>(in), in_pitch, in_dtype,
      static_cast<int>(DTypeSize(in_dtype)), static_cast<char*>(out), out_pitch,
      out_dtype, static_cast<int>(DTypeSize(out_dtype)), row_elements, n);
  REFIT_CUDA_RETURN_IF_ERROR(cudaGetLastError(), "CastDevice launch");
  return OkStatus();
}

}  // namespace refit::cuda
