// The embedded copy service: ranks are threads of one process sharing memory.
// The receiver copies straight from the sender's source tensors into its own
// destination tensors: one copy, no staging buffer.
#ifndef REFIT_TRANSPORT_EMBEDDED_EMBEDDED_COPY_SERVICE_H_
#define REFIT_TRANSPORT_EMBEDDED_EMBEDDED_COPY_SERVICE_H_

#include <chrono>
#include <functional>
#include <memory>

#include "refit/exec/block_mover.h"
#include "refit/exec/copy_service.h"

namespace refit::exec {

class EmbeddedFabricImpl;

/// The shared state of one group of rank threads. Outlives its endpoints.
class EmbeddedFabric {
 public:
  /// `timeout`: how long Run waits while nothing moves anywhere in the fabric
  /// (no message posted, taken or being copied) before it fails with
  /// kDeadlineExceeded naming the ranks it waited for.
  /// `mover`: makes each endpoint's BlockMover (default HostBlockMover):
  /// the endpoints read and write the memory kinds it declares.
  using MoverFactory = std::function<std::unique_ptr<BlockMover>()>;
  explicit EmbeddedFabric(
      int world_size,
      std::chrono::milliseconds timeout = std::chrono::seconds(60),
      MoverFactory mover = HostBlockMover);
  ~EmbeddedFabric();
  /// The endpoint of `rank` in [0, world_size); one per rank thread.
  std::unique_ptr<CopyService> Connect(int rank);

 private:
  std::shared_ptr<EmbeddedFabricImpl> impl_;
  MoverFactory mover_;
};

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_EMBEDDED_EMBEDDED_COPY_SERVICE_H_
