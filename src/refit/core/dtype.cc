#include "refit/core/dtype.h"

#include <array>
#include <string>

namespace refit {

namespace {
struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
};
constexpr std::array<DTypeInfo, 15> kTable = {{
    {DType::kBool, "BOOL", 1},
    {DType::kU8, "U8", 1},
    {DType::kI8, "I8", 1},
    {DType::kU16, "U16", 2},
    {DType::kI16, "I16", 2},
    {DType::kU32, "U32", 4},
    {DType::kI32, "I32", 4},
    {DType::kU64, "U64", 8},
    {DType::kI64, "I64", 8},
    {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},
    {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},
    {DType::kF8E4M3, "F8_E4M3", 1},
    {DType::kF8E5M2, "F8_E5M2", 1},
}};
}  // namespace

size_t DTypeSize(DType dtype) {
  return kTable[static_cast<size_t>(dtype)].size;
}

std::string_view DTypeName(DType dtype) {
  return kTable[static_cast<size_t>(dtype)].name;
}

Result<DType> ParseDType(std::string_view name) {
  for (const auto& e : kTable) {
    if (e.name == name) return e.dtype;
  }
  return InvalidArgument("unknown safetensors dtype '" + std::string(name) +
                         "'");
}

Result<DType> ParseTorchDType(std::string_view name) {
  if (name == "bfloat16") return DType::kBF16;
  if (name == "float32" || name == "float") return DType::kF32;
  if (name == "float16" || name == "half") return DType::kF16;
  return InvalidArgument("unsupported torch dtype '" + std::string(name) +
                         "' (expected bfloat16, float16 or float32)");
}

bool IsFloat(DType dtype) {
  switch (dtype) {
    case DType::kF16:
    case DType::kBF16:
    case DType::kF32:
    case DType::kF64:
    case DType::kF8E4M3:
    case DType::kF8E5M2:
      return true;
    default:
      return false;
  }
}

}  // namespace refit
