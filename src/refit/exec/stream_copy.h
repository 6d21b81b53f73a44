// Bulk byte copies for the executor.
#ifndef REFIT_EXEC_STREAM_COPY_H_
#define REFIT_EXEC_STREAM_COPY_H_

#include <cstddef>
#include <cstdint>

namespace refit::exec {

/// Copies `n` bytes like memcpy, but with non-temporal (cache-bypassing)
/// stores on x86-64: refit writes destination weights nobody reads soon, and
/// streaming stores skip the read-for-ownership of every destination line
/// (about 1.6x the bandwidth of cached stores on this project's CI machine).
/// Call StreamCopyFence() before another thread reads the bytes.
void StreamCopy(std::byte* dst, const std::byte* src, size_t n);

/// `nruns` copies of `run_bytes` bytes, run i from src + i * src_stride to
/// dst + i * dst_stride, with streaming stores. Runs that are whole 16-byte
/// aligned lines take a tight loop without per-run calls (row-parallel shards
/// move as many short runs).
void StreamCopyRuns(std::byte* dst, uint64_t dst_stride, const std::byte* src,
                    uint64_t src_stride, uint64_t run_bytes, uint64_t nruns);

/// Orders all earlier StreamCopy stores before later stores (sfence).
void StreamCopyFence();

/// Copies smaller than this (bytes) gain nothing from streaming stores.
inline constexpr size_t kStreamCopyMinBytes = 64 * 1024;

}  // namespace refit::exec

#endif  // REFIT_EXEC_STREAM_COPY_H_
