#include "py_tensor.h"

#include <pybind11/numpy.h>

#include <unordered_map>

namespace refit::python {

namespace py = pybind11;

namespace {

// torch.<name> -> refit dtype; absent: no equivalent (complex, quantised).
const std::unordered_map<std::string, DType>& TorchDTypes() {
  static const auto* m = new std::unordered_map<std::string, DType>{
      {"torch.bool", DType::kBool},
      {"torch.uint8", DType::kU8},
      {"torch.int8", DType::kI8},
      {"torch.uint16", DType::kU16},
      {"torch.int16", DType::kI16},
      {"torch.uint32", DType::kU32},
      {"torch.int32", DType::kI32},
      {"torch.uint64", DType::kU64},
      {"torch.int64", DType::kI64},
      {"torch.float16", DType::kF16},
      {"torch.bfloat16", DType::kBF16},
      {"torch.float32", DType::kF32},
      {"torch.float64", DType::kF64},
      {"torch.float8_e4m3fn", DType::kF8E4M3},
      {"torch.float8_e5m2", DType::kF8E5M2},
      // OCP MX E8M0 scales: refit holds them as U8 bytes.
      {"torch.float8_e8m0fnu", DType::kU8},
  };
  return *m;
}

// The refit dtype of a torch dtype object (torch dtypes are singletons: the
// answer is cached by object).
std::optional<DType> TorchDType(py::handle dtype) {
  static auto* cache = new std::unordered_map<PyObject*, std::optional<DType>>;
  auto it = cache->find(dtype.ptr());
  if (it != cache->end()) return it->second;
  const std::string name = py::str(dtype);
  auto known = TorchDTypes().find(name);
  std::optional<DType> d;
  if (known != TorchDTypes().end()) d = known->second;
  dtype.inc_ref();  // keep the key alive
  (*cache)[dtype.ptr()] = d;
  return d;
}

std::optional<DType> NumpyDType(const py::dtype& dt) {
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  switch (kind) {
    case 'b':
      return DType::kBool;
    case 'u':
      return size == 1   ? DType::kU8
             : size == 2 ? DType::kU16
             : size == 4 ? DType::kU32
                         : DType::kU64;
    case 'i':
      return size == 1   ? DType::kI8
             : size == 2 ? DType::kI16
             : size == 4 ? DType::kI32
                         : DType::kI64;
    case 'f':
      if (size == 2) return DType::kF16;
      if (size == 4) return DType::kF32;
      if (size == 8) return DType::kF64;
      return std::nullopt;
    default: {
      // ml_dtypes' bfloat16 / float8 types.
      const std::string name = py::str(dt.attr("name"));
      if (name == "bfloat16") return DType::kBF16;
      if (name == "float8_e4m3fn") return DType::kF8E4M3;
      if (name == "float8_e5m2") return DType::kF8E5M2;
      return std::nullopt;
    }
  }
}

// The expected dtype when `actual` is the unsigned integer holding its bytes.
DType Alias(DType actual, std::optional<DType> expected) {
  if (!expected) return actual;
  const bool fp8 = *expected == DType::kF8E4M3 || *expected == DType::kF8E5M2;
  if (fp8 && actual == DType::kU8) return *expected;
  if (*expected == DType::kBF16 &&
      (actual == DType::kU16 || actual == DType::kI16)) {
    return *expected;
  }
  return actual;
}

// An attribute name, interned once (never freed: the interpreter may tear
// down pybind11 statics in any order).
#define REFIT_ATTR(name)                                   \
  ([]() -> py::handle {                                    \
    static PyObject* s = PyUnicode_InternFromString(name); \
    return s;                                              \
  }())

// The ints of a tuple (torch.Size, a stride tuple), read through the C API:
// a refit call reads every tensor's shape and strides.
std::vector<int64_t> Ints(py::handle tuple) {
  PyObject* t = tuple.ptr();
  if (!PyTuple_Check(t)) {
    std::vector<int64_t> out;
    for (py::handle v : tuple) out.push_back(v.cast<int64_t>());
    return out;
  }
  const Py_ssize_t n = PyTuple_GET_SIZE(t);
  std::vector<int64_t> out(n);
  for (Py_ssize_t i = 0; i < n; ++i) {
    out[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(t, i));
  }
  if (PyErr_Occurred()) throw py::error_already_set();
  return out;
}

py::object Attr(py::handle obj, py::handle name) {
  PyObject* v = PyObject_GetAttr(obj.ptr(), name.ptr());
  if (v == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(v);
}

py::object Call(py::handle obj, py::handle name) {
  PyObject* v = PyObject_CallMethodNoArgs(obj.ptr(), name.ptr());
  if (v == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(v);
}

ViewOrWhy TorchView(py::handle t, std::optional<DType> expected) {
  ViewOrWhy r;
  py::object dt = Attr(t, REFIT_ATTR("dtype"));
  std::optional<DType> d = TorchDType(dt);
  if (!d) {
    r.why = "dtype " + std::string(py::str(dt)) + " has no refit equivalent";
    return r;
  }
  if (Attr(t, REFIT_ATTR("is_cuda")).ptr() == Py_True) {
    r.view.memory = MemoryKind::kCuda;
  } else if (Attr(t, REFIT_ATTR("is_cpu")).ptr() != Py_True) {
    const std::string device = py::str(t.attr("device").attr("type"));
    r.why = "on device " + device + " (refit reads cpu and cuda tensors)";
    return r;
  }
  r.view.dtype = Alias(*d, expected);
  r.view.data = PyLong_AsVoidPtr(Call(t, REFIT_ATTR("data_ptr")).ptr());
  r.view.shape = Ints(Attr(t, REFIT_ATTR("shape")));
  r.view.strides = Ints(Call(t, REFIT_ATTR("stride")));
  return r;
}

ViewOrWhy NumpyView(const py::array& a, std::optional<DType> expected,
                    bool writable) {
  ViewOrWhy r;
  std::optional<DType> d = NumpyDType(a.dtype());
  if (!d) {
    r.why = "numpy dtype " + std::string(py::str(a.dtype())) +
            " has no refit equivalent";
    return r;
  }
  if (writable && !a.writeable()) {
    r.why = "a read-only numpy array";
    return r;
  }
  r.view.dtype = Alias(*d, expected);
  r.view.data = const_cast<void*>(a.data());
  const auto itemsize = a.itemsize();
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    r.view.shape.push_back(a.shape(i));
    // A stride that is not a whole number of elements is never contiguous.
    r.view.strides.push_back(
        a.strides(i) % itemsize == 0 ? a.strides(i) / itemsize : -1);
  }
  return r;
}

}  // namespace

ViewOrWhy ViewOfObject(py::handle obj, std::optional<DType> expected,
                       bool writable) {
  if (py::isinstance<py::array>(obj)) {
    return NumpyView(py::reinterpret_borrow<py::array>(obj), expected,
                     writable);
  }
  if (PyObject_HasAttr(obj.ptr(), REFIT_ATTR("data_ptr").ptr()) &&
      PyObject_HasAttr(obj.ptr(), REFIT_ATTR("stride").ptr())) {
    return TorchView(obj, expected);
  }
  ViewOrWhy r;
  r.why = "a " + std::string(py::str(py::type::of(obj).attr("__name__"))) +
          ", not a torch.Tensor or numpy.ndarray";
  return r;
}

std::string TorchDTypeName(DType d) {
  for (const auto& [name, dtype] : TorchDTypes()) {
    if (dtype == d && name != "torch.float8_e8m0fnu") return name.substr(6);
  }
  return "";
}

}  // namespace refit::python
