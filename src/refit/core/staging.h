// The staging bound of a copy service: how much memory one rank may hold for
// messages that are not contiguous on both sides, and how many chunks it keeps
// in flight per direction (the chunk size follows from both).
#ifndef REFIT_CORE_STAGING_H_
#define REFIT_CORE_STAGING_H_

#include <cstdint>

namespace refit {

struct ScheduleOptions {
  uint64_t max_staging_bytes = 256ull << 20;  ///< per rank, send + receive
  int max_inflight = 4;  ///< outstanding chunks per rank per direction

  /// Chunk size that keeps max_inflight sends and receives within the
  /// staging bound: max_staging_bytes / (2 * max_inflight).
  uint64_t chunk_bytes() const {
    return max_staging_bytes / (2 * static_cast<uint64_t>(max_inflight));
  }
};

}  // namespace refit

#endif  // REFIT_CORE_STAGING_H_
