// HostFormatKernels: core/quant's CPU kernels over host memory.
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "refit/core/format/scale_layout.h"
#include "refit/core/quant/float_cast.h"
#include "refit/core/quant/mxfp8.h"
#include "refit/core/quant/scale_swizzle.h"
#include "refit/exec/format_kernels.h"

namespace refit::exec {

namespace {

class HostKernels final : public FormatKernels {
 public:
  MemoryKind memory() const override { return MemoryKind::kHost; }

  Status Copy2D(const std::byte* from, uint64_t from_pitch, std::byte* to,
                uint64_t to_pitch, uint64_t width, uint64_t rows) override {
    for (uint64_t r = 0; r < rows; ++r) {
      std::memcpy(to + r * to_pitch, from + r * from_pitch, width);
    }
    return OkStatus();
  }

  Status Cast2D(const std::byte* from, uint64_t from_pitch, DType from_dtype,
                std::byte* to, uint64_t to_pitch, DType to_dtype,
                uint64_t row_elements, uint64_t rows) override {
    const uint64_t in = row_elements * DTypeSize(from_dtype);
    const uint64_t out = row_elements * DTypeSize(to_dtype);
    for (uint64_t r = 0; r < rows; ++r) {
      REFIT_RETURN_IF_ERROR(
          quant::CastBuffer({from + r * from_pitch, in}, from_dtype,
                            {to + r * to_pitch, out}, to_dtype));
    }
    return OkStatus();
  }

  Status QuantizeBox(const ParamFormat& f, const std::byte* in, int64_t n,
                     int64_t k, std::byte* data, std::byte* scales,
                     bool swizzled) override {
    const uint64_t elements = static_cast<uint64_t>(n * k);
    const std::span<const std::byte> box{in, elements * DTypeSize(f.src_dtype)};
    const uint64_t plain = BoxScaleBytes(f, n, k);
    if (!swizzled || f.kind != FormatKind::kMxfp8) {
      return refit::QuantizeBox(f, box, n, k, {data, elements},
                                {scales, plain});
    }
    std::vector<std::byte> unswizzled(plain);
    REFIT_RETURN_IF_ERROR(
        refit::QuantizeBox(f, box, n, k, {data, elements}, unswizzled));
    const int64_t cols = k / quant::kMxfp8BlockSize;
    return quant::Swizzle128x4(
        unswizzled, n, cols,
        {scales, static_cast<uint64_t>(quant::Swizzled128x4Bytes(n, cols))});
  }

 protected:
  Result<std::byte*> AllocateBytes(uint64_t bytes) override {
    const uint64_t rounded = (bytes + 63) / 64 * 64;
    auto* p = static_cast<std::byte*>(std::aligned_alloc(64, rounded));
    if (p == nullptr) {
      return Internal("host memory: out of memory allocating " +
                      std::to_string(bytes) + " bytes");
    }
    return p;
  }
  void Free(std::byte* p) override { std::free(p); }
};

}  // namespace

FormatKernels& HostFormatKernels() {
  static HostKernels kernels;
  return kernels;
}

}  // namespace refit::exec
