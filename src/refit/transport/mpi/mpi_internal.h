// Private to refit::transport_mpi (includes mpi.h): MPI errors as Status,
// waiting on requests with a timeout, and communicator duplication.
#ifndef REFIT_TRANSPORT_MPI_MPI_INTERNAL_H_
#define REFIT_TRANSPORT_MPI_MPI_INTERNAL_H_

#include <mpi.h>

#include <chrono>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "refit/core/status.h"

namespace refit::exec::internal {

/// kIoError "<context>: <MPI's error string>" for an MPI return code.
Status MpiError(int code, std::string_view context);

/// `ms` as seconds for messages, e.g. "5 s" or "0.25 s".
std::string Seconds(std::chrono::milliseconds ms);

/// Tracks how long a polling loop has gone without progress, and backs off
/// while idle: it yields the core (ranks may share cores), then sleeps
/// briefly once idle for a millisecond.
class IdleTimer {
 public:
  explicit IdleTimer(std::chrono::milliseconds timeout) : timeout_(timeout) {}
  /// Something completed: restart the clock.
  void Progress();
  /// True once nothing has completed for the timeout.
  bool Expired() const;
  /// Gives the core away before the next poll.
  void Backoff() const;

 private:
  using Clock = std::chrono::steady_clock;
  std::chrono::milliseconds timeout_;
  Clock::time_point last_ = Clock::now();
};

/// MpiError of the first failed status among the `count` first, after
/// MPI_Test*some returned MPI_ERR_IN_STATUS.
Status FirstError(std::span<const MPI_Status> statuses, int count,
                  std::string_view context);

/// Polls `requests` (MPI_REQUEST_NULL entries are done) until all complete.
/// When none completes for `timeout`, fails with kDeadlineExceeded and the
/// message `describe(indices of the requests still pending)`.
/// Errors: also kIoError for MPI errors, prefixed with `context`.
Status WaitAll(
    std::span<MPI_Request> requests, std::chrono::milliseconds timeout,
    std::string_view context,
    const std::function<std::string(std::span<const int>)>& describe);

/// A duplicate of `comm` that returns errors instead of aborting
/// (MPI_ERRORS_RETURN). Collective; waits at most `timeout` for the peers.
/// Errors: as WaitAll.
Result<MPI_Comm> DupComm(MPI_Comm comm, std::chrono::milliseconds timeout,
                         std::string_view context);

}  // namespace refit::exec::internal

#endif  // REFIT_TRANSPORT_MPI_MPI_INTERNAL_H_
