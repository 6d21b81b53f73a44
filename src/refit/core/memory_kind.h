// Where a tensor's bytes live: what a tensor view declares and what a
// transport says it can read and write.
#ifndef REFIT_CORE_MEMORY_KIND_H_
#define REFIT_CORE_MEMORY_KIND_H_

#include <cstdint>
#include <string_view>

namespace refit {

enum class MemoryKind : uint8_t {
  kHost,  ///< ordinary (pageable or pinned) host memory
  kCuda,  ///< CUDA device memory
};

/// "host" or "cuda".
constexpr std::string_view MemoryKindName(MemoryKind kind) {
  return kind == MemoryKind::kHost ? "host" : "cuda";
}

}  // namespace refit

#endif  // REFIT_CORE_MEMORY_KIND_H_
