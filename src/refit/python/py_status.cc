#include "py_status.h"

namespace refit::python {

namespace py = pybind11;

namespace {

// Owned by the module object (never freed: the interpreter may tear down
// pybind11 statics in any order).
PyObject* g_refit_error = nullptr;
PyObject* g_timeout_error = nullptr;

PyObject* TypeOf(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument:
      return PyExc_ValueError;
    case StatusCode::kNotFound:
      return PyExc_KeyError;
    case StatusCode::kUnimplemented:
      return PyExc_NotImplementedError;
    case StatusCode::kDeadlineExceeded:
      return g_timeout_error;
    default:
      return g_refit_error;
  }
}

}  // namespace

void RegisterErrors(py::module_& m) {
  g_refit_error = PyErr_NewExceptionWithDoc(
      "refit.RefitError",
      "A refit failed for a reason other than bad input (transport, data "
      "loss, ranks that disagree, an internal error).",
      PyExc_RuntimeError, nullptr);
  PyObject* bases = PyTuple_Pack(2, g_refit_error, PyExc_TimeoutError);
  g_timeout_error = PyErr_NewExceptionWithDoc(
      "refit.RefitTimeoutError",
      "A peer made no progress for the group's timeout (the refit failed on "
      "every rank; the weight version did not change).",
      bases, nullptr);
  Py_DECREF(bases);
  m.add_object("RefitError", py::handle(g_refit_error));
  m.add_object("RefitTimeoutError", py::handle(g_timeout_error));
}

void Raise(const Status& status) {
  PyErr_SetString(TypeOf(status.code()), status.message().c_str());
  throw py::error_already_set();
}

}  // namespace refit::python
