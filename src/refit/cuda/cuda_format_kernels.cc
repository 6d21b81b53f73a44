// CudaFormatKernels: the format transform's kernels on CUDA memory of the
// current device (device_kernels.h), queued in order on a stream of their
// own; Sync waits for them (the quantisers also synchronise, to report a
// non-finite element).
#include <cuda_runtime_api.h>

#include <string>

#include "refit/core/quant/mxfp8.h"
#include "refit/cuda/copy_rows.h"
#include "refit/cuda/cuda_check.h"
#include "refit/cuda/device_kernels.h"
#include "refit/exec/format_kernels.h"

namespace refit::exec {

namespace {

class CudaKernels final : public FormatKernels {
 public:
  explicit CudaKernels(cudaStream_t stream) : stream_(stream) {}
  ~CudaKernels() override {
    if (event_ != nullptr) cudaEventDestroy(event_);
    cudaStreamDestroy(stream_);
  }
  MemoryKind memory() const override { return MemoryKind::kCuda; }

  Status Copy2D(const std::byte* from, uint64_t from_pitch, std::byte* to,
                uint64_t to_pitch, uint64_t width, uint64_t rows) override {
    return cuda::CopyRowsAsync(to, to_pitch, from, from_pitch, width, rows,
                               stream_, "format kernels");
  }

  Status Cast2D(const std::byte* from, uint64_t from_pitch, DType from_dtype,
                std::byte* to, uint64_t to_pitch, DType to_dtype,
                uint64_t row_elements, uint64_t rows) override {
    return cuda::Cast2DDevice(from, from_pitch, from_dtype, to, to_pitch,
                              to_dtype, static_cast<int64_t>(row_elements),
                              static_cast<int64_t>(rows), stream_);
  }

  Status QuantizeBox(const ParamFormat& f, const std::byte* in, int64_t n,
                     int64_t k, std::byte* data, std::byte* scales,
                     bool swizzled) override {
    if (f.kind == FormatKind::kMxfp8) {
      REFIT_RETURN_IF_ERROR(cuda::QuantizeMxfp8Device(
          in, f.src_dtype, n, k, data, scales, swizzled, stream_));
    } else {
      quant::BlockFp8Options o;
      o.block = f.block;
      o.scale_format = f.scale_format;
      REFIT_RETURN_IF_ERROR(cuda::QuantizeBlockFp8Device(
          in, f.src_dtype, n, k, o, data, scales, stream_));
    }
    return OkStatus();
  }

  Status Sync() override {
    REFIT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_),
                               "format kernels");
    return OkStatus();
  }

  // The kernels' stream waits for an event recorded on the caller's.
  Status OrderAfter(uintptr_t cuda_stream) override {
    if (event_ == nullptr) {
      REFIT_CUDA_RETURN_IF_ERROR(
          cudaEventCreateWithFlags(&event_, cudaEventDisableTiming),
          "format kernels: event");
    }
    REFIT_CUDA_RETURN_IF_ERROR(
        cudaEventRecord(event_, reinterpret_cast<cudaStream_t>(cuda_stream)),
        "format kernels: the caller's stream");
    REFIT_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, event_, 0),
                               "format kernels: wait for the caller's stream");
    return OkStatus();
  }

 protected:
  Result<std::byte*> AllocateBytes(uint64_t bytes) override {
    void* p = nullptr;
    REFIT_CUDA_RETURN_IF_ERROR(
        cudaMalloc(&p, bytes),
        "format kernels: cudaMalloc of " + std::to_string(bytes) + " bytes");
    return static_cast<std::byte*>(p);
  }
  // Queued copies out of a scratch buffer may still read it when a larger
  // allocation replaces it: they finish first.
  void Free(std::byte* p) override {
    cudaStreamSynchronize(stream_);
    cudaFree(p);
  }

 private:
  cudaStream_t stream_;
  cudaEvent_t event_ = nullptr;
};

}  // namespace

Result<std::unique_ptr<FormatKernels>> CudaFormatKernels() {
  cudaStream_t stream = nullptr;
  REFIT_CUDA_RETURN_IF_ERROR(
      cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
      "format kernels: stream");
  return std::unique_ptr<FormatKernels>(std::make_unique<CudaKernels>(stream));
}

}  // namespace refit::exec
