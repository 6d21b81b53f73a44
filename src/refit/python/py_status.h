// refit's Status as Python exceptions, at the edge of the package (the engine
// returns Status values; only the Python module raises).
#ifndef REFIT_PYTHON_PY_STATUS_H_
#define REFIT_PYTHON_PY_STATUS_H_

#include <pybind11/pybind11.h>

#include "refit/core/status.h"

namespace refit::python {

/// Adds refit.RefitError (a RuntimeError) and refit.RefitTimeoutError (a
/// RefitError and a TimeoutError) to `m`.
void RegisterErrors(pybind11::module_& m);

/// Raises the Python exception of `status` (which must not be OK):
/// kInvalidArgument -> ValueError, kNotFound -> KeyError, kUnimplemented ->
/// NotImplementedError, kDeadlineExceeded -> RefitTimeoutError, any other ->
/// RefitError. The message is the status message, one line.
[[noreturn]] void Raise(const Status& status);

/// Raise(status) unless it is OK.
inline void ThrowIfError(const Status& status) {
  if (!status.ok()) Raise(status);
}

/// The value of `result`, or Raise(its status).
template <typename T>
T ValueOrRaise(Result<T> result) {
  if (!result.ok()) Raise(result.status());
  return std::move(*result);
}

}  // namespace refit::python

#endif  // REFIT_PYTHON_PY_STATUS_H_
