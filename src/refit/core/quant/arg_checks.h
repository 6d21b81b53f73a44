// Internal to refit::quant: the argument checks the quantisers share.
#ifndef REFIT_CORE_QUANT_ARG_CHECKS_H_
#define REFIT_CORE_QUANT_ARG_CHECKS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "refit/core/status.h"

namespace refit::quant::internal {

/// "[a, b]", for messages. Built by appending: GCC 12 warns falsely
/// (-Wrestrict) on "literal" + std::string.
inline std::string Shape(int64_t a, int64_t b) {
  std::string s = "[";
  s += std::to_string(a);
  s += ", ";
  s += std::to_string(b);
  s += "]";
  return s;
}

/// kInvalidArgument naming function `fn` and buffer `what` unless `got` bytes
/// equal `want`.
inline Status CheckSize(const char* fn, const char* what, size_t got,
                        int64_t want) {
  if (got == static_cast<size_t>(want)) return OkStatus();
  return InvalidArgument(std::string(fn) + ": " + what + " has " +
                         std::to_string(got) + " bytes, expected " +
                         std::to_string(want));
}

}  // namespace refit::quant::internal

#endif  // REFIT_CORE_QUANT_ARG_CHECKS_H_
