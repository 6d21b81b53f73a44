#include "refit/transport/mpi/mpi_internal.h"

#include <cstdio>
#include <thread>
#include <vector>

namespace refit::exec::internal {

Status MpiError(int code, std::string_view context) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) {
    len = std::snprintf(text, sizeof(text), "MPI error %d", code);
  }
  return IoError(std::string(context) + ": " + std::string(text, len));
}

std::string Seconds(std::chrono::milliseconds ms) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", ms.count() / 1000.0);
  return text;
}

void IdleTimer::Progress() { last_ = Clock::now(); }

bool IdleTimer::Expired() const { return Clock::now() - last_ >= timeout_; }

void IdleTimer::Backoff() const {
  if (Clock::now() - last_ < std::chrono::milliseconds(1)) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

Status FirstError(std::span<const MPI_Status> statuses, int count,
                  std::string_view context) {
  for (int i = 0; i < count; ++i) {
    if (statuses[i].MPI_ERROR != MPI_SUCCESS) {
      return MpiError(statuses[i].MPI_ERROR, context);
    }
  }
  return MpiError(MPI_ERR_IN_STATUS, context);
}

Status WaitAll(
    std::span<MPI_Request> requests, std::chrono::milliseconds timeout,
    std::string_view context,
    const std::function<std::string(std::span<const int>)>& describe) {
  const int n = static_cast<int>(requests.size());
  std::vector<int> done(n);
  std::vector<MPI_Status> statuses(n);
  IdleTimer idle(timeout);
  while (true) {
    int count = 0;
    const int rc =
        MPI_Testsome(n, requests.data(), &count, done.data(), statuses.data());
    if (rc == MPI_ERR_IN_STATUS) return FirstError(statuses, count, context);
    if (rc != MPI_SUCCESS) return MpiError(rc, context);
    if (count == MPI_UNDEFINED) return OkStatus();  // nothing left pending
    if (count > 0) {
      idle.Progress();
      continue;
    }
    if (idle.Expired()) {
      std::vector<int> pending;
      for (int i = 0; i < n; ++i) {
        if (requests[i] != MPI_REQUEST_NULL) pending.push_back(i);
      }
      return DeadlineExceeded(describe(pending));
    }
    idle.Backoff();
  }
}

Result<MPI_Comm> DupComm(MPI_Comm comm, std::chrono::milliseconds timeout,
                         std::string_view context) {
  MPI_Comm dup = MPI_COMM_NULL;
  MPI_Request request = MPI_REQUEST_NULL;
  int rc = MPI_Comm_idup(comm, &dup, &request);
  if (rc != MPI_SUCCESS) return MpiError(rc, context);
  REFIT_RETURN_IF_ERROR(
      WaitAll({&request, 1}, timeout, context, [&](std::span<const int>) {
        return std::string(context) + ": the other ranks did not join within " +
               Seconds(timeout);
      }));
  rc = MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
  if (rc != MPI_SUCCESS) return MpiError(rc, context);
  return dup;
}

}  // namespace refit::exec::internal
