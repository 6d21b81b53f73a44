// refit._refit: the compiled part of the Python package (refit/__init__.py
// re-exports it with the pure-Python conveniences).
#include <pybind11/pybind11.h>

#include "py_model.h"
#include "py_status.h"
#include "py_swap.h"

PYBIND11_MODULE(_refit, m) {
  m.doc() = "refit: Megatron-layout weight refits over caller-owned tensors.";
  refit::python::RegisterErrors(m);
  refit::python::RegisterModel(m);
  refit::python::RegisterSwap(m);
}
