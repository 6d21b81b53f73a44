// Element types of safetensors files (huggingface/safetensors README,
// "Format").
#ifndef REFIT_CORE_DTYPE_H_
#define REFIT_CORE_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "refit/core/status.h"

namespace refit {

/// The safetensors dtypes refit reads and writes.
enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kU16,
  kI16,
  kU32,
  kI32,
  kU64,
  kI64,
  kF16,
  kBF16,
  kF32,
  kF64,
  kF8E4M3,
  kF8E5M2,
};

/// Size of one element in bytes (BOOL is one byte).
size_t DTypeSize(DType dtype);
/// The safetensors spelling: "BF16", "F8_E4M3", ...
std::string_view DTypeName(DType dtype);
/// Parses a safetensors dtype string.
/// Errors: kInvalidArgument for an unknown spelling (the message names it).
Result<DType> ParseDType(std::string_view name);
/// Parses a PyTorch/HF config spelling ("bfloat16", "float32", "float16").
/// Errors: kInvalidArgument for anything else.
Result<DType> ParseTorchDType(std::string_view name);
/// True for F16, BF16, F32, F64 and the FP8 types.
bool IsFloat(DType dtype);

}  // namespace refit

#endif  // REFIT_CORE_DTYPE_H_
