// A Python tensor (torch.Tensor or numpy.ndarray) as a refit TensorView of the
// same memory: no copy, no ownership. Read with the GIL held.
#ifndef REFIT_PYTHON_PY_TENSOR_H_
#define REFIT_PYTHON_PY_TENSOR_H_

#include <pybind11/pybind11.h>

#include <optional>
#include <string>

#include "refit/tensor_view.h"

namespace refit::python {

/// A view, or why there is none (`why` non-empty: the tensor cannot be bound).
struct ViewOrWhy {
  TensorView view;
  std::string why;
};

/// The view of `obj`: its data pointer (torch: data_ptr(); numpy: the array
/// interface's address), dtype, shape, strides in elements, and memory kind
/// (torch "cuda" tensors: kCuda; "cpu" tensors and numpy arrays: kHost).
/// `expected` is the dtype the model wants for this tensor, when known: a
/// framework without that dtype may pass the same bytes as the unsigned
/// integer of its width (uint8 for F8_E4M3 / F8_E5M2, as torch 1.13 and numpy
/// lack FP8; uint16 or int16 for BF16 in numpy), and the view then takes the
/// expected dtype. `writable`: the tensor will be written (a read-only numpy
/// array cannot be). Reasons: not a tensor, a dtype refit has no equivalent
/// of, another device, read-only.
ViewOrWhy ViewOfObject(pybind11::handle obj, std::optional<DType> expected,
                       bool writable);

/// The torch dtype name of refit dtype `d` ("bfloat16", "float8_e4m3fn",
/// "uint8", ...), as torch spells the attribute.
std::string TorchDTypeName(DType d);

}  // namespace refit::python

#endif  // REFIT_PYTHON_PY_TENSOR_H_
