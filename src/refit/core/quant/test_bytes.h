// Test helper: byte views of vectors.
#ifndef REFIT_CORE_QUANT_TEST_BYTES_H_
#define REFIT_CORE_QUANT_TEST_BYTES_H_

#include <cstddef>
#include <span>
#include <vector>

namespace refit::quant::testing {

template <typename T>
std::span<const std::byte> AsBytes(const std::vector<T>& v) {
  return std::as_bytes(std::span(v));
}
template <typename T>
std::span<std::byte> AsWritableBytes(std::vector<T>& v) {
  return std::as_writable_bytes(std::span(v));
}

}  // namespace refit::quant::testing

#endif  // REFIT_CORE_QUANT_TEST_BYTES_H_
