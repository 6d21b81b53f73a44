// A P2pBackend for ranks that are threads of one process, in host memory:
// the p2p copy service (and through it the NCCL transport's protocol) runs
// and is tested on machines without a GPU. Every call completes before it
// returns; an Exchange waits until its peers have posted their matching sides.
#ifndef REFIT_TRANSPORT_P2P_THREAD_P2P_BACKEND_H_
#define REFIT_TRANSPORT_P2P_THREAD_P2P_BACKEND_H_

#include <chrono>
#include <memory>

#include "refit/transport/p2p/p2p_backend.h"

namespace refit::exec {

struct ThreadP2pOptions {
  /// An Exchange fails with kDeadlineExceeded when nothing of it has matched
  /// for this long.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  /// True: any memory is exchanged in place. False: only memory from
  /// Allocate, as NCCL does with device memory, so every chunk of a
  /// caller's host memory goes through staging.
  bool exchange_any_memory = true;
};

class ThreadP2pFabricImpl;

/// The shared state of a group of rank threads. Outlives its backends.
class ThreadP2pFabric {
 public:
  ThreadP2pFabric(int world_size, ThreadP2pOptions options = {});
  ~ThreadP2pFabric();
  /// The backend of `rank` in [0, world_size); one per rank thread.
  std::unique_ptr<P2pBackend> Connect(int rank);

 private:
  std::shared_ptr<ThreadP2pFabricImpl> impl_;
};

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_P2P_THREAD_P2P_BACKEND_H_
