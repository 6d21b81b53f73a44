// The model side of the Python package: refit.ModelSpec, refit.ParallelLayout,
// refit.ShardedModel (one rank's tensors, held by reference), shard_shapes,
// and the checkpoint reader behind refit.load_shards.
#ifndef REFIT_PYTHON_PY_MODEL_H_
#define REFIT_PYTHON_PY_MODEL_H_

#include <pybind11/pybind11.h>

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "refit/core/format/dst_format.h"
#include "refit/sharded_model.h"

namespace refit::python {

/// refit.ModelSpec: a shared, immutable model spec.
struct PySpec {
  std::shared_ptr<const ModelSpec> spec;
};

/// refit.ShardedModel: one rank's model. Holds the caller's tensor objects
/// (keeping them alive) and reads their data pointers, shapes and dtypes again
/// at every refit, so a tensor whose storage was replaced (param.data = ...)
/// is bound where it now lives.
class PyModel {
 public:
  /// `params`: a Mapping[str, tensor], or an object with named_parameters()
  /// (a torch.nn.Module: its parameters, and those of its named_buffers()
  /// that the layout holds; leading "module." wrappers are dropped).
  /// Raises ValueError for a layout that does not divide the model.
  PyModel(PySpec spec, const ParallelLayout& layout, int rank, int world_size,
          pybind11::handle params);

  /// This rank's views for a refit, with `transform` (nullptr: the source
  /// format) deciding the expected dtypes; `writable` for a destination.
  /// Tensors that cannot be viewed are bound as views no check accepts, so
  /// the refit fails on every rank before any byte moves; their reasons are
  /// appended to `why` as "rank R: <side> tensor NAME: <reason>".
  const ShardedModel& Views(const PrecisionOptions* transform,
                            const std::string& transform_key, bool writable,
                            int group_rank, std::vector<std::string>& why);
  /// Views(nullptr, "", false, ...) as a source; with the destination's
  /// transform and writable as a destination.

  const ShardedModel& model() const { return model_; }
  /// "cuda" when any tensor was a CUDA tensor at construction, else "cpu".
  const char* device() const { return cuda_ ? "cuda" : "cpu"; }
  const std::vector<std::string>& names() const { return names_; }
  pybind11::object tensor(const std::string& name) const;

 private:
  // Expected dtype of names_[i] under a transform; nullopt for a name the
  // layout does not hold.
  const std::vector<std::optional<DType>>& Expected(
      const PrecisionOptions* transform, const std::string& key);
  void Add(std::string name, pybind11::handle tensor);

  ShardedModel model_;
  std::vector<std::string> names_;
  std::vector<pybind11::object> tensors_;
  std::vector<TensorView*> slots_;  // model_.tensors[names_[i]]
  bool cuda_ = false;
  std::unordered_map<std::string, std::vector<std::optional<DType>>> expected_;
};

/// Adds ModelSpec, ParallelLayout, ShardedModel, shard_shapes and the
/// checkpoint reader (_Checkpoint) to `m`.
void RegisterModel(pybind11::module_& m);

}  // namespace refit::python

#endif  // REFIT_PYTHON_PY_MODEL_H_
