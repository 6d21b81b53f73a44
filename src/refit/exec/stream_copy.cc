#include "refit/exec/stream_copy.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace refit::exec {

#if defined(__x86_64__)

void StreamCopy(std::byte* dst, const std::byte* src, size_t n) {
  // Align the destination to 16 bytes, stream 64-byte blocks, copy the tail.
  size_t head = (16 - (reinterpret_cast<uintptr_t>(dst) & 15)) & 15;
  if (head > n) head = n;
  std::memcpy(dst, src, head);
  dst += head, src += head, n -= head;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const auto* s = reinterpret_cast<const __m128i*>(src + i);
    auto* d = reinterpret_cast<__m128i*>(dst + i);
    const __m128i a = _mm_loadu_si128(s), b = _mm_loadu_si128(s + 1);
    const __m128i c = _mm_loadu_si128(s + 2), e = _mm_loadu_si128(s + 3);
    _mm_stream_si128(d, a);
    _mm_stream_si128(d + 1, b);
    _mm_stream_si128(d + 2, c);
    _mm_stream_si128(d + 3, e);
  }
  std::memcpy(dst + i, src + i, n - i);
}

void StreamCopyFence() { _mm_sfence(); }

#else

void StreamCopy(std::byte* dst, const std::byte* src, size_t n) {
  std::memcpy(dst, src, n);
}

void StreamCopyFence() {}

#endif

}  // namespace refit::exec
