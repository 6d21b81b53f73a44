#include "refit/core/dtype.h"

#include <gtest/gtest.h>

namespace refit {
namespace {

TEST(DTypeTest, NamesRoundTripWithSizes) {
  const std::pair<const char*, size_t> table[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"U16", 2},     {"I16", 2},
      {"U32", 4},  {"I32", 4}, {"U64", 8}, {"I64", 8},     {"F16", 2},
      {"BF16", 2}, {"F32", 4}, {"F64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  for (const auto& [name, size] : table) {
    Result<DType> d = ParseDType(name);
    ASSERT_TRUE(d.ok()) << name;
    EXPECT_EQ(DTypeName(*d), name);
    EXPECT_EQ(DTypeSize(*d), size) << name;
  }
}

TEST(DTypeTest, UnknownNamesAreRefusedByName) {
  Result<DType> d = ParseDType("F4");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("'F4'"), std::string::npos);
  EXPECT_FALSE(ParseTorchDType("int8").ok());
  EXPECT_EQ(*ParseTorchDType("bfloat16"), DType::kBF16);
}

}  // namespace
}  // namespace refit
