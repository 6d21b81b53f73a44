// The `transform` argument of the Python API: None, a destination format as
// `refit run --dst-dtype` names it ("fp8-block"), or a dict of the same
// choices as `refit run`'s flags (core/format/precision_choices.h).
#ifndef REFIT_PYTHON_PY_TRANSFORM_H_
#define REFIT_PYTHON_PY_TRANSFORM_H_

#include <pybind11/pybind11.h>

#include <optional>
#include <string>

#include "refit/core/format/dst_format.h"

namespace refit::python {

struct Transform {
  std::optional<PrecisionOptions> options;  ///< nullopt: no conversion
  std::string key;  ///< equal for equal transforms ("" for none)

  const PrecisionOptions* get() const { return options ? &*options : nullptr; }
};

/// Parses `transform`: None; a str (dst_dtype); or a dict with the keys
/// dst_dtype, cast (list of "PATTERN=bf16|f16|f32"), cast_on, quantize_on
/// ("send" / "recv"), fp8_block (int), fp8_scale ("f32" / "ue8m0"),
/// mxfp8_swizzled (bool). Raises ValueError naming the bad key or value.
Transform ParseTransform(pybind11::handle transform);

}  // namespace refit::python

#endif  // REFIT_PYTHON_PY_TRANSFORM_H_
