// Internal to refit::quant (not a public API): hand-written AVX-512 kernels
// for the hot loops of quantising BF16 to E4M3 (block FP8 and MXFP8), chosen
// at run time when the CPU has AVX-512 F/BW/VL; the portable loops of
// block_fp8.cc and mxfp8.cc run everywhere else. Both give the same bytes
// (fast_path_test.cc runs both on random inputs against a scalar reference).
//
// The kernels are compiled with a function-level target attribute only, so
// the library still builds and runs on any x86-64 (and on other targets,
// where this file declares stubs that are never selected).
#ifndef REFIT_CORE_QUANT_BF16_FP8_AVX512_H_
#define REFIT_CORE_QUANT_BF16_FP8_AVX512_H_

#include <cstddef>
#include <cstdint>

namespace refit::quant::internal {

/// True when the AVX-512 kernels below may run: the CPU supports them and
/// they have not been switched off with SetBf16Avx512Enabled(false).
bool UseBf16Avx512();

/// Test hook: false makes UseBf16Avx512() return false (the portable loops
/// run); true restores the CPU check. Not thread-safe with respect to running
/// quantisers; meant for tests and benchmarks.
void SetBf16Avx512Enabled(bool enabled);

/// One row of block FP8 from BF16, as block_fp8.cc's portable QuantizeRow:
/// for column block gc (columns [gc * bc, min(k, (gc + 1) * bc))),
/// out[c] = F32ToE4M3(x[c] / scales[gc], kSaturate), using x[c] * recips[gc]
/// when recips[gc] != 0 (an exact reciprocal). Preconditions: every x is
/// finite and |x[c] / scales[gc]| < 464 (true when scales[gc] is at least
/// F32(amax / 448) of the block), scales[gc] > 0. `row` and `out` need no
/// alignment. Only callable when UseBf16Avx512().
void QuantizeBlockFp8RowBf16Avx512(const std::byte* row, int64_t k, int64_t bc,
                                   const float* scales, const float* recips,
                                   std::byte* out);

/// One row of MXFP8 from BF16, as mxfp8.cc's portable QuantizeRow:
/// out[c] = F32ToE4M3(x[c] * mult[c], kSaturate) for c in [0, k), where k is
/// a multiple of 32 and mult is constant on each block of 32 (only
/// mult[32 * b] is read). Preconditions: every x finite and
/// |x[c] * mult[c]| < 464. Only callable when UseBf16Avx512().
void QuantizeMxfp8RowBf16Avx512(const std::byte* row, size_t k,
                                const float* mult, std::byte* out);

}  // namespace refit::quant::internal

#endif  // REFIT_CORE_QUANT_BF16_FP8_AVX512_H_
