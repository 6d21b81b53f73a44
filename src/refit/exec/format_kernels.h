// The memory and number-format kernels the format transform runs on: the
// CPU's (core/quant) for host tensors, refit::cuda's device kernels for CUDA
// tensors (src/refit/cuda/device_kernels.h, bit-identical to the CPU's). The
// transform decides what to convert where (format_transform.h); the kernels
// only carry it out, on one kind of memory. Header-only interface: the CUDA
// implementation lives in refit::cuda_kernels, below refit::exec.
#ifndef REFIT_EXEC_FORMAT_KERNELS_H_
#define REFIT_EXEC_FORMAT_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

#include "refit/core/dtype.h"
#include "refit/core/format/dst_format.h"
#include "refit/core/memory_kind.h"
#include "refit/core/status.h"

namespace refit::exec {

class FormatKernels;

/// `size` bytes of one FormatKernels' memory, freed by it (which must
/// outlive the buffer).
class KernelBuffer {
 public:
  KernelBuffer() = default;
  KernelBuffer(FormatKernels* owner, std::byte* data, uint64_t size)
      : owner_(owner), data_(data), size_(size) {}
  KernelBuffer(KernelBuffer&& o) noexcept { *this = std::move(o); }
  KernelBuffer& operator=(KernelBuffer&& o) noexcept;
  ~KernelBuffer();

  std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  FormatKernels* owner_ = nullptr;
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

/// Every pointer passed to a FormatKernels is memory of its kind (memory()).
/// Calls run in the order they are made but may return before their work is
/// done (a device implementation queues it on its stream); Sync waits for
/// all of it. Whatever a transport or the caller reads must be synced first.
class FormatKernels {
 public:
  virtual ~FormatKernels() = default;
  /// The memory these kernels read and write.
  virtual MemoryKind memory() const = 0;
  /// `bytes` (> 0) of uninitialised memory of this kind, 64-byte aligned.
  /// Errors: kInternal for out of memory (the size named) or a device
  /// error.
  Result<KernelBuffer> Allocate(uint64_t bytes) {
    REFIT_ASSIGN_OR_RETURN(std::byte * p, AllocateBytes(bytes));
    return KernelBuffer(this, p, bytes);
  }
  /// Copies `rows` rows of `width` bytes from `from` (rows `from_pitch` bytes
  /// apart) to `to` (rows `to_pitch` apart). Errors: the device's (kInternal).
  virtual Status Copy2D(const std::byte* from, uint64_t from_pitch,
                        std::byte* to, uint64_t to_pitch, uint64_t width,
                        uint64_t rows) = 0;
  /// Converts `rows` rows of `row_elements` elements of `from_dtype` (rows
  /// `from_pitch` bytes apart) into `to_dtype` at `to` (rows `to_pitch`
  /// bytes apart), as quant::CastBuffer does (RNE; F32, BF16, F16).
  /// Errors: kInvalidArgument for another dtype; the device's (kInternal).
  virtual Status Cast2D(const std::byte* from, uint64_t from_pitch,
                        DType from_dtype, std::byte* to, uint64_t to_pitch,
                        DType to_dtype, uint64_t row_elements,
                        uint64_t rows) = 0;
  /// QuantizeBox (core/format/scale_layout.h) of the contiguous n x k box
  /// `in` (f.src_dtype): n * k F8_E4M3 bytes into `data`; block FP8: the
  /// BlockGrid(n, k, f.block) F32 scales into `scales`; MXFP8: E8M0 scales,
  /// [n, k / 32] or, when `swizzled`, the 128x4 layout
  /// (quant::Swizzled128x4Bytes(n, k / 32) bytes).
  /// Errors: as QuantizeBlockFp8 / QuantizeMxfp8 (a non-finite element named
  /// by [row, col]); the device's (kInternal).
  virtual Status QuantizeBox(const ParamFormat& f, const std::byte* in,
                             int64_t n, int64_t k, std::byte* data,
                             std::byte* scales, bool swizzled) = 0;
  /// Returns when every call made so far has finished. Host: nothing to
  /// wait for. Errors: the device's (kInternal, e.g. a kernel's failure).
  virtual Status Sync() { return OkStatus(); }
  /// The next call starts after the work queued so far on the caller's CUDA
  /// stream `cuda_stream` (a cudaStream_t as an integer). Host: nothing.
  virtual Status OrderAfter(uintptr_t /*cuda_stream*/) { return OkStatus(); }

 protected:
  friend class KernelBuffer;
  virtual Result<std::byte*> AllocateBytes(uint64_t bytes) = 0;
  virtual void Free(std::byte* p) = 0;
};

inline KernelBuffer& KernelBuffer::operator=(KernelBuffer&& o) noexcept {
  if (this != &o) {
    if (owner_ != nullptr) owner_->Free(data_);
    owner_ = std::exchange(o.owner_, nullptr);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

inline KernelBuffer::~KernelBuffer() {
  if (owner_ != nullptr) owner_->Free(data_);
}

/// The CPU's kernels over host memory (one shared, stateless instance).
FormatKernels& HostFormatKernels();

/// refit::cuda's device kernels over CUDA memory of the current device, on a
/// stream of their own. Errors: kUnimplemented when this build of refit has
/// no CUDA (REFIT_WITH_CUDA, nvcc not found); kInternal when CUDA cannot
/// create the stream (no device, named).
Result<std::unique_ptr<FormatKernels>> CudaFormatKernels();

}  // namespace refit::exec

#endif  // REFIT_EXEC_FORMAT_KERNELS_H_
