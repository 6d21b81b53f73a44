#include "py_transform.h"

#include <pybind11/stl.h>

#include "py_status.h"
#include "refit/core/format/precision_choices.h"

namespace refit::python {

namespace py = pybind11;

namespace {

// Sets the choice `key` of `c` from `value`; false for an unknown key.
bool SetChoice(PrecisionChoices& c, const std::string& key, py::handle value) {
  if (key == "dst_dtype") {
    c.dst_dtype = value.cast<std::string>();
  } else if (key == "cast") {
    c.casts = py::isinstance<py::str>(value)
                  ? std::vector<std::string>{value.cast<std::string>()}
                  : value.cast<std::vector<std::string>>();
  } else if (key == "cast_on") {
    c.cast_on = value.cast<std::string>();
  } else if (key == "quantize_on") {
    c.quantize_on = value.cast<std::string>();
  } else if (key == "fp8_block") {
    c.fp8_block = value.cast<int64_t>();
  } else if (key == "fp8_scale") {
    c.fp8_scale = value.cast<std::string>();
  } else if (key == "mxfp8_swizzled") {
    c.mxfp8_swizzled = value.cast<bool>();
  } else {
    return false;
  }
  return true;
}

PrecisionChoices ChoicesOf(py::handle transform) {
  PrecisionChoices c;
  if (py::isinstance<py::str>(transform)) {
    c.dst_dtype = transform.cast<std::string>();
    return c;
  }
  if (!py::isinstance<py::dict>(transform)) {
    Raise(InvalidArgument(
        "transform: a " +
        std::string(py::str(py::type::of(transform).attr("__name__"))) +
        ", expected None, a str or a dict"));
  }
  for (auto [k, v] : transform.cast<py::dict>()) {
    const std::string key = py::str(k);
    bool known = false;
    try {
      known = SetChoice(c, key, v);
    } catch (const py::cast_error&) {
      Raise(InvalidArgument("transform[\"" + key +
                            "\"]: " + std::string(py::str(py::repr(v))) +
                            " has the wrong type"));
    }
    if (!known) {
      Raise(InvalidArgument(
          "transform: unknown key \"" + key +
          "\" (dst_dtype, cast, cast_on, quantize_on, fp8_block, "
          "fp8_scale, mxfp8_swizzled)"));
    }
  }
  return c;
}

}  // namespace

Transform ParseTransform(py::handle transform) {
  Transform t;
  if (transform.is_none()) return t;
  const PrecisionChoices c = ChoicesOf(transform);
  t.options = ValueOrRaise(MakePrecisionOptions(c, [](std::string_view field) {
    return "transform[\"" + std::string(field) + "\"]";
  }));
  t.key = py::str(py::repr(transform));
  return t;
}

}  // namespace refit::python
