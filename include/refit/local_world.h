// The "local" refit method: every rank of the group is a thread of this
// process and the transport is the embedded copy service (a receiver copies
// straight from its sender's source tensors: one copy, no staging).
#ifndef REFIT_LOCAL_WORLD_H_
#define REFIT_LOCAL_WORLD_H_

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "refit/communicator.h"
#include "refit/core/memory_kind.h"
#include "refit/core/status.h"

namespace refit {

struct LocalWorldOptions {
  /// A rank fails (kDeadlineExceeded) when nothing has moved for this long.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  /// Where the ranks' tensors may live. kHost: host memory, copied by the
  /// CPU. kCuda: host or CUDA device memory (views of MemoryKind kCuda),
  /// copied with cudaMemcpy (the ranks may share one GPU or use several);
  /// a build without CUDA fails each refit with kUnimplemented.
  MemoryKind memory = MemoryKind::kHost;
};

class LocalWorld {
 public:
  /// A group of `world_size` (>= 1) ranks.
  explicit LocalWorld(int world_size, LocalWorldOptions options = {});
  ~LocalWorld();
  LocalWorld(const LocalWorld&) = delete;
  LocalWorld& operator=(const LocalWorld&) = delete;

  int size() const;
  /// The communicator of rank `r` in [0, size()): use it from one thread at a
  /// time, the thread that runs that rank.
  Communicator& rank(int r);

  /// Runs body(r) for every rank r at once, each on its own thread (kept
  /// between calls), and returns every rank's status, indexed by rank.
  /// Not reentrant: one ForEachRank at a time.
  std::vector<Status> ForEachRank(const std::function<Status(int)>& body);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace refit

#endif  // REFIT_LOCAL_WORLD_H_
