#include "refit/exec/stream_copy.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace refit::exec {

#if defined(__x86_64__)

namespace {

// One 64-byte line with streaming stores; dst is 16-byte aligned.
inline void StreamLine(std::byte* dst, const std::byte* src) {
  const auto* s = reinterpret_cast<const __m128i*>(src);
  auto* d = reinterpret_cast<__m128i*>(dst);
  const __m128i a = _mm_loadu_si128(s), b = _mm_loadu_si128(s + 1);
  const __m128i c = _mm_loadu_si128(s + 2), e = _mm_loadu_si128(s + 3);
  _mm_stream_si128(d, a);
  _mm_stream_si128(d + 1, b);
  _mm_stream_si128(d + 2, c);
  _mm_stream_si128(d + 3, e);
}

}  // namespace

void StreamCopy(std::byte* dst, const std::byte* src, size_t n) {
  // Align the destination to 16 bytes, stream 64-byte lines, copy the tail.
  size_t head = (16 - (reinterpret_cast<uintptr_t>(dst) & 15)) & 15;
  if (head > n) head = n;
  std::memcpy(dst, src, head);
  dst += head, src += head, n -= head;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) StreamLine(dst + i, src + i);
  std::memcpy(dst + i, src + i, n - i);
}

void StreamCopyRuns(std::byte* dst, uint64_t dst_stride, const std::byte* src,
                    uint64_t src_stride, uint64_t run_bytes, uint64_t nruns) {
  const bool lines = run_bytes % 64 == 0 && dst_stride % 16 == 0 &&
                     (reinterpret_cast<uintptr_t>(dst) & 15) == 0;
  for (uint64_t r = 0; r < nruns; ++r) {
    std::byte* d = dst + r * dst_stride;
    const std::byte* s = src + r * src_stride;
    if (!lines) {
      StreamCopy(d, s, run_bytes);
      continue;
    }
    for (uint64_t i = 0; i < run_bytes; i += 64) StreamLine(d + i, s + i);
  }
}

void StreamCopyFence() { _mm_sfence(); }

#else

void StreamCopy(std::byte* dst, const std::byte* src, size_t n) {
  std::memcpy(dst, src, n);
}

void StreamCopyRuns(std::byte* dst, uint64_t dst_stride, const std::byte* src,
                    uint64_t src_stride, uint64_t run_bytes, uint64_t nruns) {
  for (uint64_t r = 0; r < nruns; ++r) {
    std::memcpy(dst + r * dst_stride, src + r * src_stride, run_bytes);
  }
}

void StreamCopyFence() {}

#endif

}  // namespace refit::exec
