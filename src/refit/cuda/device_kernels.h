// Device versions of refit's number-format kernels, bit-identical to the CPU
// kernels of core/quant (the same scalar conversions, compiled for the
// device): casts between F32, BF16, F16 and FP8, 128x128-block FP8
// quantisation with F32 or UE8M0 scales (DeepSeek-V3 inference/kernel.py
// weight_quant; OCP MX v1.0 for E4M3 / E8M0), and MXFP8 quantisation (OCP MX
// v1.0; Megatron mxfp8_quantize.py). Every pointer is device memory
// (or managed memory); every call is stream-ordered on `stream` and returns
// once the work is queued, except where it says it synchronises.
#ifndef REFIT_CUDA_DEVICE_KERNELS_H_
#define REFIT_CUDA_DEVICE_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "refit/core/dtype.h"
#include "refit/core/quant/block_fp8.h"
#include "refit/core/status.h"

namespace refit::cuda {

/// out[i] = in[i] converted from `in_dtype` to `out_dtype`, i < n, as
/// quant::CastBuffer does it: any pair among F32, BF16 and F16 (RNE; BF16 <->
/// F16 through F32); the same dtype is a copy. FP8 comes from the
/// quantisation kernels below. `in` and `out` must not overlap.
/// Errors: kInvalidArgument for another dtype (the pair named) or a pointer
/// not aligned to its element size; kInternal for a CUDA error (named).
Status CastDevice(const void* in, DType in_dtype, void* out, DType out_dtype,
                  int64_t n, cudaStream_t stream);

/// CastDevice over `rows` rows of `row_elements` elements each, row r of the
/// input at byte r * in_pitch of `in` and of the output at r * out_pitch of
/// `out` (pitches in bytes, whole elements; ignored for one row).
/// Errors: as CastDevice; kInvalidArgument for a pitch that is not whole
/// elements.
Status Cast2DDevice(const void* in, uint64_t in_pitch, DType in_dtype,
                    void* out, uint64_t out_pitch, DType out_dtype,
                    int64_t row_elements, int64_t rows, cudaStream_t stream);

/// quant::QuantizeBlockFp8 on the device: `in` [n, k] row-major of in_dtype
/// (F32, BF16, F16; aligned to its element size) -> `data` F8_E4M3 [n, k]
/// and `scale_inv` F32 [ceil(n / B_r), ceil(k / B_c)] (4-byte aligned), byte
/// for byte what the CPU kernel writes (IEEE F32 division, not an
/// approximate one). Synchronises `stream` to report a non-finite input
/// element.
/// Errors: kInvalidArgument for bad geometry or options, an input dtype that
/// is not F32/BF16/F16, a misaligned pointer, or a NaN / infinite element
/// (the one the CPU kernel names: the first of the first such block in
/// row-major block order, by [row, col]); kInternal for a CUDA error.
Status QuantizeBlockFp8Device(const void* in, DType in_dtype, int64_t n,
                              int64_t k, const quant::BlockFp8Options& options,
                              void* data, void* scale_inv, cudaStream_t stream);

/// quant::QuantizeMxfp8 on the device: `in` [m, k] row-major of in_dtype
/// (F32, BF16, F16; aligned to its element size) -> `data` F8_E4M3 [m, k]
/// (m * k bytes) and one E8M0 scale byte per 32 elements along K, NVIDIA's
/// recipe 2^ceil(log2(amax / 448)) (OCP MX v1.0 block size and formats;
/// Megatron megatron/core/inference/quantization/mxfp8_quantize.py): `scales`
/// is [m, k / 32] row-major when !swizzled, or the cuBLAS / FlashInfer 128x4
/// layout of quant::Swizzle128x4 when swizzled, quant::Swizzled128x4Bytes(m,
/// k / 32) bytes with zero padding. Byte for byte what quant::QuantizeMxfp8
/// (then quant::Swizzle128x4) writes (IEEE F32 division and subnormals: not
/// built with --use_fast_math). Synchronises `stream` to report a non-finite
/// input element.
/// Errors: kInvalidArgument for m or k < 0, k % 32 != 0 (the message names
/// K), an input dtype that is not F32/BF16/F16, a null or misaligned pointer,
/// or a NaN / infinite element (the first, named by [row, col]); kInternal
/// for a CUDA error. Outputs are unspecified after an error.
Status QuantizeMxfp8Device(const void* in, DType in_dtype, int64_t m, int64_t k,
                           void* data, void* scales, bool swizzled,
                           cudaStream_t stream);

}  // namespace refit::cuda

#endif  // REFIT_CUDA_DEVICE_KERNELS_H_
