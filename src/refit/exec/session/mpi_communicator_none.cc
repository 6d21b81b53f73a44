// MpiCommunicator of a refit built without MPI (REFIT_WITH_MPI off or MPI not
// found).
#include "refit/mpi_communicator.h"

namespace refit {

bool HaveMpi() { return false; }

Result<std::unique_ptr<Communicator>> MpiCommunicator(MpiCommHandle,
                                                      const MpiOptions&) {
  return Unimplemented(
      "refit was built without MPI: the \"mpi\" method is not available");
}

}  // namespace refit
