// A caller-owned tensor as refit sees it: a data pointer, a dtype, a shape
// and where the memory lives. refit never allocates, copies or frees the
// caller's tensors: a refit reads source views and writes destination views
// in place.
#ifndef REFIT_TENSOR_VIEW_H_
#define REFIT_TENSOR_VIEW_H_

#include <cstdint>
#include <string>
#include <vector>

#include "refit/core/dtype.h"
#include "refit/core/memory_kind.h"

namespace refit {

struct TensorView {
  /// First element. Must stay valid (and, for a destination, writable) for
  /// the whole SwapModelWeights call.
  void* data = nullptr;
  DType dtype = DType::kBF16;
  /// Sizes, outermost first (row-major), e.g. [rows, cols] of a weight.
  std::vector<int64_t> shape;
  /// Strides in elements, outermost first; empty means contiguous row-major.
  /// refit needs contiguous tensors: any other strides are an error naming
  /// the tensor (PyTorch: call .contiguous() first).
  std::vector<int64_t> strides;
  MemoryKind memory = MemoryKind::kHost;

  /// Elements (product of shape; 1 for a 0-d tensor).
  int64_t numel() const;
  /// numel() * DTypeSize(dtype).
  uint64_t nbytes() const;
  /// True when strides is empty or equals the row-major strides of shape
  /// (dimensions of size 1 may have any stride).
  bool contiguous() const;
};

/// "[d0, d1, ...]", for messages.
std::string ShapeString(const std::vector<int64_t>& shape);

}  // namespace refit

#endif  // REFIT_TENSOR_VIEW_H_
