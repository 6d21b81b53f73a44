// The refit calls of the Python package over refit groups: refit.LocalGroup
// (ranks are threads of this process), refit.MpiGroup (one process per rank,
// from an mpi4py communicator), refit.SwapReport, and the swap, prepare,
// reshard, service and cache functions behind refit's Python API.
#ifndef REFIT_PYTHON_PY_SWAP_H_
#define REFIT_PYTHON_PY_SWAP_H_

#include <pybind11/pybind11.h>

namespace refit::python {

/// Adds LocalGroup, MpiGroup, CopyService, SwapReport, have_mpi and the
/// _swap_local / _swap_mpi / _service / _clear_* functions to `m`.
void RegisterSwap(pybind11::module_& m);

}  // namespace refit::python

#endif  // REFIT_PYTHON_PY_SWAP_H_
