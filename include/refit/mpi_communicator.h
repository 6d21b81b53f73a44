// The "mpi" refit method: one process per rank, built from an MPI
// communicator the caller already has. refit never initialises MPI when it is
// initialised, never assumes MPI_COMM_WORLD and never finalizes MPI.
#ifndef REFIT_MPI_COMMUNICATOR_H_
#define REFIT_MPI_COMMUNICATOR_H_

#include <chrono>
#include <cstdint>
#include <memory>

#include "refit/communicator.h"
#include "refit/core/status.h"
#include "refit/mpi_comm_handle.h"

namespace refit {

struct MpiOptions {
  /// A rank fails (kDeadlineExceeded) when no message completes for this long.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  /// Staging memory per rank for pieces not contiguous on both sides, bytes.
  uint64_t max_staging_bytes = 256ull << 20;
  /// Packed chunks in flight per direction (they share the staging), and
  /// chunks sent from and received into the tensors in place.
  int max_inflight = 4;
  int max_inflight_direct = 64;
};

/// True when this build of refit has the MPI transport.
bool HaveMpi();

/// The group of the processes of `comm`; its ranks are `comm`'s. Collective
/// over `comm` (duplicates it). MPI must be initialised (by the caller, e.g.
/// mpi4py, or MPI_Init).
/// Errors: kUnimplemented when refit was built without MPI;
/// kFailedPrecondition when MPI is not initialised; kIoError for MPI errors;
/// kDeadlineExceeded when the other ranks do not join within the timeout.
Result<std::unique_ptr<Communicator>> MpiCommunicator(
    MpiCommHandle comm, const MpiOptions& options = {});

}  // namespace refit

#endif  // REFIT_MPI_COMMUNICATOR_H_
