// The refit group: the ranks that take part in a refit and the transport
// between them. Every rank of the group calls SwapModelWeights with its own
// Communicator, like every rank of Megatron's refit group calls
// swap_model_weights (megatron_resharding.md §1.2). The communicator's method
// is the reference's refit_method: "local" (LocalWorld: ranks are threads of
// this process) or "mpi" (MpiCommunicator: one process per rank).
#ifndef REFIT_COMMUNICATOR_H_
#define REFIT_COMMUNICATOR_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "refit/core/status.h"

namespace refit {

namespace exec {
class CopyService;
}

class Communicator {
 public:
  Communicator();
  /// Closes this rank's cached copy service and drops its cached sessions.
  virtual ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  /// "local" or "mpi".
  virtual std::string_view method() const = 0;
  /// This rank in the group, and the group's size.
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// True when every rank of the group is a thread of this process (ranks
  /// then share one reshard plan).
  virtual bool shares_process() const = 0;
  /// How long a rank waits without progress before a call fails with
  /// kDeadlineExceeded.
  virtual std::chrono::milliseconds timeout() const = 0;

  /// Every rank's `mine`, indexed by rank. Collective: every rank calls it.
  /// Errors: kDeadlineExceeded naming the ranks that did not come within
  /// timeout(); the transport's.
  virtual Result<std::vector<std::string>> AllGather(std::string_view mine) = 0;

  /// A new endpoint of this rank on the group's transport (GetOrCreateService
  /// caches it). Collective for some transports: every rank calls it.
  virtual Result<std::unique_ptr<exec::CopyService>> CreateCopyService() = 0;

  /// Unique among the communicators this process ever created; keys caches.
  uint64_t id() const { return id_; }
  /// Refits completed on every rank through this communicator (0 before the
  /// first). Only a refit that succeeded on every rank of the group
  /// increments it, so a receiver can publish it as the weights' version.
  uint64_t weight_version() const { return weight_version_; }
  /// After the last SwapModelWeights / ReshardModelWeights call on this rank
  /// failed once bytes had started to move: the names (as bound in the
  /// destination ShardedModel, sorted) of this rank's destination tensors
  /// whose bytes that refit may have changed in whole or in part (every
  /// destination tensor the rank binds: conservative). Empty after a
  /// success, after a failure before any byte moved (binding, disagreeing
  /// inputs: no destination byte changed) and with SwapOptions::atomic.
  const std::vector<std::string>& partial_tensors() const {
    return partial_tensors_;
  }

 private:
  friend class SessionAccess;
  uint64_t id_;
  uint64_t weight_version_ = 0;
  std::vector<std::string> partial_tensors_;
};

}  // namespace refit

#endif  // REFIT_COMMUNICATOR_H_
