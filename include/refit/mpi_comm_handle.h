// An MPI communicator as refit's public headers pass it, without mpi.h.
#ifndef REFIT_MPI_COMM_HANDLE_H_
#define REFIT_MPI_COMM_HANDLE_H_

#include <cstdint>

namespace refit {

/// An MPI communicator as its Fortran handle: MPI_Comm_c2f(comm) in C or
/// C++, comm.py2f() in mpi4py (MPI_Comm_f2c turns it back).
struct MpiCommHandle {
  int64_t fortran = 0;
};

}  // namespace refit

#endif  // REFIT_MPI_COMM_HANDLE_H_
