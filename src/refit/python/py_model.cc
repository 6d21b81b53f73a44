#include "py_model.h"

#include <pybind11/stl.h>

#include <unordered_set>

#include "py_status.h"
#include "py_tensor.h"
#include "py_transform.h"
#include "refit/checkpoint/checkpoint_shards.h"
#include "refit/exec/session/tensor_binding.h"
#include "refit/io/config_file.h"
#include "refit/io/safetensors.h"

namespace refit::python {

namespace py = pybind11;

namespace {

std::string StripWrappers(std::string name) {
  while (name.starts_with("module.")) name.erase(0, 7);
  return name;
}

PySpec SpecFromConfig(py::handle config, bool mtp) {
  std::string text;
  std::string origin = "config";
  if (py::isinstance<py::dict>(config)) {
    text = py::str(py::module_::import("json").attr("dumps")(config));
  } else {
    origin = py::str(py::module_::import("os").attr("fspath")(config));
    Result<std::string> read = io::ReadConfigText(origin);
    if (!read.ok()) {
      PyErr_SetString(PyExc_FileNotFoundError, read.status().message().c_str());
      throw py::error_already_set();
    }
    text = std::move(*read);
  }
  Result<ModelSpec> spec = ModelSpecFromConfigJson(text, {.mtp = mtp});
  if (!spec.ok()) {
    Raise(
        Status(spec.status().code(), origin + ": " + spec.status().message()));
  }
  return {std::make_shared<const ModelSpec>(std::move(*spec))};
}

py::dict ShardShapesDict(const PySpec& spec, const ParallelLayout& layout,
                         int rank, int world_size, py::handle transform,
                         bool stacked_experts) {
  const Transform t = ParseTransform(transform);
  auto shapes = ValueOrRaise(ShardShapes(
      *spec.spec, layout, rank, world_size, t.get(),
      stacked_experts ? ExpertBinding::kStacked : ExpertBinding::kPerExpert));
  py::dict out;
  for (const ShardShape& s : shapes) {
    out[py::str(s.name)] =
        py::make_tuple(py::tuple(py::cast(s.shape)), DTypeName(s.dtype));
  }
  return out;
}

py::list ParamDicts(const PySpec& s) {
  static const char* kPlacement[] = {"layer", "first_stage", "last_stage"};
  py::list out;
  for (const ParamSpec& p : s.spec->params) {
    py::dict d;
    d["name"] = p.name;
    d["shape"] = py::tuple(py::cast(p.shape));
    d["dtype"] = DTypeName(p.dtype);
    d["shard"] = ShardKindName(p.shard);
    d["tp_group"] = p.tp_group == TpGroup::kDense ? "dense" : "expert";
    d["layer"] = p.layer;
    d["expert"] = p.expert;
    d["placement"] = kPlacement[static_cast<int>(p.placement)];
    d["hf_names"] = p.hf_names;
    out.append(std::move(d));
  }
  return out;
}

py::dict RankCoordinates(const PySpec& spec, const ParallelLayout& layout,
                         int rank, int world_size) {
  const Layout l = ValueOrRaise(Layout::Create(layout, world_size, *spec.spec));
  if (rank < 0 || rank >= world_size) {
    Raise(InvalidArgument("rank " + std::to_string(rank) +
                          " is not in a world of " +
                          std::to_string(world_size)));
  }
  py::dict d;
  d["tp"] = l.TpRank(rank);
  d["cp"] = l.CpRank(rank);
  d["dp"] = l.DpRank(rank);
  d["pp"] = l.PpRank(rank);
  d["etp"] = l.EtpRank(rank);
  d["ep"] = l.EpRank(rank);
  d["edp"] = l.EdpRank(rank);
  d["experts_per_rank"] = l.ExpertsPerRank();
  return d;
}

// A Hugging Face checkpoint bound to its model: fills a rank's shards into
// tensors the caller allocated (refit.load_shards).
class PyCheckpoint {
 public:
  PyCheckpoint(const std::string& path, bool mtp) : path_(path) {
    Result<std::string> text = io::ReadConfigText(path);
    ThrowIfError(text.status());
    ModelSpec spec = ValueOrRaise(ModelSpecFromConfigJson(*text, {.mtp = mtp}));
    ckpt_ = std::make_unique<io::Checkpoint>(
        ValueOrRaise(io::Checkpoint::Open(path)));
    bound_ = ValueOrRaise(exec::BindCheckpoint(spec, *ckpt_));
    spec_ = std::make_shared<const ModelSpec>(std::move(spec));
  }

  PySpec spec() const { return {spec_}; }

  // Writes the shards of `rank` of `layout` into `tensors` (name -> tensor of
  // the shapes shard_shapes gives, zero-filled by the caller for padding).
  void Fill(const ParallelLayout& layout, int rank, int world_size,
            py::handle tensors) {
    const Layout l = ValueOrRaise(Layout::Create(layout, world_size, *spec_));
    PyModel model(spec(), layout, rank, world_size, tensors);
    std::vector<std::string> why;
    const ShardedModel& views =
        model.Views(nullptr, "", /*writable=*/true, rank, why);
    if (!why.empty()) Raise(InvalidArgument(why.front()));
    exec::ShardArena arena = exec::ShardArena::Geometry(*spec_, l, rank);
    static const ScaleLayout kNone;
    const exec::SideBinding binding(
        *spec_, IdentityFormats(*spec_), l, rank, arena,
        [](uint32_t) -> const ScaleLayout& { return kNone; },
        exec::SideBinding::Side::kDestination);
    ThrowIfError(binding.Bind(
        views, rank, {MemoryKind::kHost},
        [&](uint32_t p, bool, std::byte* data) { arena.Bind(p, data); }));
    py::gil_scoped_release release;
    exec::FillArena(*spec_, bound_, arena);
  }

 private:
  std::string path_;
  std::unique_ptr<io::Checkpoint> ckpt_;
  exec::BoundCheckpoint bound_;
  std::shared_ptr<const ModelSpec> spec_;
};

}  // namespace

PyModel::PyModel(PySpec spec, const ParallelLayout& layout, int rank,
                 int world_size, py::handle params) {
  if (!spec.spec) Raise(InvalidArgument("ShardedModel: no model spec"));
  model_.spec = std::move(spec.spec);
  model_.layout = layout;
  model_.rank = rank;
  model_.world_size = world_size;
  // The layout checked against the model (ValueError) once; the names it
  // holds pick the module buffers that are weights.
  const std::vector<ShardShape> shapes =
      ValueOrRaise(ShardShapes(*model_.spec, layout, rank, world_size));
  if (py::hasattr(params, "named_parameters")) {
    for (py::handle item : params.attr("named_parameters")()) {
      auto pair = item.cast<py::tuple>();
      Add(StripWrappers(pair[0].cast<std::string>()), pair[1]);
    }
    // Buffers that are weights of the layout (router.expert_bias); others
    // (rotary tables, masks) are not refit.
    std::unordered_set<std::string> known;
    for (const ShardShape& s : shapes) known.insert(s.name);
    for (py::handle item : params.attr("named_buffers")()) {
      auto pair = item.cast<py::tuple>();
      std::string name = StripWrappers(pair[0].cast<std::string>());
      if (known.contains(name)) Add(std::move(name), pair[1]);
    }
  } else {
    for (py::handle item : params.attr("items")()) {
      auto pair = item.cast<py::tuple>();
      Add(pair[0].cast<std::string>(), pair[1]);
    }
  }
}

void PyModel::Add(std::string name, py::handle tensor) {
  if (py::hasattr(tensor, "is_cuda") && py::bool_(tensor.attr("is_cuda"))) {
    cuda_ = true;
  }
  names_.push_back(std::move(name));
  tensors_.push_back(py::reinterpret_borrow<py::object>(tensor));
}

py::object PyModel::tensor(const std::string& name) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return tensors_[i];
  }
  throw py::key_error(name);
}

const std::vector<std::optional<DType>>& PyModel::Expected(
    const PrecisionOptions* transform, const std::string& key) {
  auto it = expected_.find(key);
  if (it != expected_.end()) return it->second;
  // Routed experts may be bound per expert or stacked: expect either name.
  std::unordered_map<std::string, DType> by_name;
  for (ExpertBinding experts :
       {ExpertBinding::kPerExpert, ExpertBinding::kStacked}) {
    auto shapes =
        ValueOrRaise(ShardShapes(*model_.spec, model_.layout, model_.rank,
                                 model_.world_size, transform, experts));
    for (const ShardShape& s : shapes) by_name[s.name] = s.dtype;
  }
  std::vector<std::optional<DType>> out(names_.size());
  for (size_t i = 0; i < names_.size(); ++i) {
    auto found = by_name.find(names_[i]);
    if (found != by_name.end()) out[i] = found->second;
  }
  return expected_[key] = std::move(out);
}

const ShardedModel& PyModel::Views(const PrecisionOptions* transform,
                                   const std::string& transform_key,
                                   bool writable, int group_rank,
                                   std::vector<std::string>& why) {
  const auto& expected = Expected(transform, transform_key);
  if (slots_.empty() && !names_.empty()) {
    // unordered_map values stay where they are: look each name up once.
    for (const std::string& name : names_) {
      slots_.push_back(&model_.tensors[name]);
    }
  }
  for (size_t i = 0; i < names_.size(); ++i) {
    ViewOrWhy v = ViewOfObject(tensors_[i], expected[i], writable);
    if (!v.why.empty()) {
      why.push_back("rank " + std::to_string(group_rank) + ": " +
                    (writable ? "destination" : "source") + " tensor " +
                    names_[i] + ": " + v.why);
      // No check accepts this view: the refit fails everywhere, unmoved.
      v.view = TensorView{nullptr, DType::kU8, {-1}, {}, MemoryKind::kHost};
    }
    *slots_[i] = std::move(v.view);
  }
  return model_;
}

void RegisterModel(py::module_& m) {
  py::class_<PySpec>(m, "ModelSpec", R"doc(
The parameters of a model, built from its Hugging Face config.json: Megatron
names, logical (TP=1, unpadded) shapes, dtypes and how each is split.
Supported architectures: Llama, Qwen2/3, Qwen3-MoE, Mixtral, OLMoE,
DeepSeek-V2/V3 (and Kimi-K2), GLM-4.x MoE, MiniMax-M2, Mllama (text).)doc")
      .def_static("from_config", &SpecFromConfig, py::arg("path_or_dict"),
                  py::arg("mtp") = false,
                  R"doc(
A spec from a config.json file, a checkpoint folder holding one, or the
config as a dict. mtp=True adds the multi-token prediction layers
(num_nextn_predict_layers, DeepSeek-V3 style: "mtp.layers.K.*", refit with
the main model; docs/LAYOUTS.md §2.4). Raises FileNotFoundError (no such file), ValueError (a
missing or ill-typed field, named), NotImplementedError (an architecture
refit does not support, named).)doc")
      .def_property_readonly(
          "architecture", [](const PySpec& s) { return s.spec->architecture; })
      .def_property_readonly("mtp_layers",
                             [](const PySpec& s) { return s.spec->mtp_layers; })
      .def_property_readonly("num_layers",
                             [](const PySpec& s) { return s.spec->num_layers; })
      .def_property_readonly(
          "num_experts", [](const PySpec& s) { return s.spec->num_experts; })
      .def_property_readonly(
          "hidden_size", [](const PySpec& s) { return s.spec->hidden_size; })
      .def_property_readonly("vocab_size",
                             [](const PySpec& s) { return s.spec->vocab_size; })
      .def_property_readonly(
          "total_params", [](const PySpec& s) { return s.spec->TotalParams(); },
          "Parameters (HF elements), tied tensors counted once.")
      .def_property_readonly(
          "param_names",
          [](const PySpec& s) {
            std::vector<std::string> names;
            for (const ParamSpec& p : s.spec->params) names.push_back(p.name);
            return names;
          },
          "Megatron names with global layer and expert indices, in order.")
      .def_property_readonly("params", &ParamDicts, R"doc(
Every parameter in spec order, as a dict: name (global Megatron name), shape
(logical: TP=1, unpadded), dtype, shard ("replicated", "column", "row",
"gated_column", "vocab"), tp_group ("dense" or "expert"), layer and expert
(-1 when none), placement ("layer", "first_stage", "last_stage"),
hf_names.)doc")
      .def("__repr__", [](const PySpec& s) {
        return "ModelSpec(" + s.spec->architecture + ", " +
               std::to_string(s.spec->num_layers) + " layers, " +
               std::to_string(s.spec->num_experts) + " experts, " +
               std::to_string(s.spec->TotalParams()) + " params)";
      });

  py::class_<ParallelLayout>(m, "ParallelLayout", R"doc(
Megatron parallel sizes: tp, pp, ep, etp (0 = same as tp), cp, uneven
first/last pipeline stages, and the family whose tensors a rank holds
(family=megatron, vllm, sglang or hf; docs/LAYOUTS.md §2). A plain string
("tp=2,ep=2,family=vllm") is accepted wherever a layout is.)doc")
      .def(py::init([](const std::string& text) {
             return ValueOrRaise(ParseParallelConfig(text));
           }),
           py::arg("text"))
      .def_static(
          "parse",
          [](const std::string& text) {
            return ValueOrRaise(ParseParallelConfig(text));
          },
          py::arg("text"), R"doc(
Parses "tp=2,pp=1,ep=2,etp=1,family=vllm" (omitted sizes are 1, etp
omitted = tp, family omitted = megatron).
Raises ValueError naming the bad key or value.)doc")
      .def_readonly("tp", &ParallelLayout::tp)
      .def_readonly("pp", &ParallelLayout::pp)
      .def_readonly("ep", &ParallelLayout::ep)
      .def_property_readonly("etp", &ParallelLayout::expert_tp)
      .def_readonly("cp", &ParallelLayout::cp)
      .def_property_readonly(
          "family",
          [](const ParallelLayout& l) {
            return std::string(LayoutFamilyName(l.family));
          },
          "whose tensors the layout describes: megatron, vllm, sglang or hf "
          "(docs/LAYOUTS.md §2)")
      .def("__str__", &ParallelLayout::ToString)
      .def("__repr__",
           [](const ParallelLayout& l) {
             return "ParallelLayout('" + l.ToString() + "')";
           })
      .def("__eq__", [](const ParallelLayout& a, const ParallelLayout& b) {
        return a.ToString() == b.ToString();
      });
  py::implicitly_convertible<py::str, ParallelLayout>();

  py::class_<PyModel>(m, "ShardedModel", R"doc(
One rank's model: spec, layout, this rank within the layout (not the refit
group), the layout's world size, and its tensors by Megatron local name
(shard_shapes lists them). `params` is a Mapping[str, Tensor] (torch.Tensor
or numpy.ndarray, contiguous, on cpu) or a torch.nn.Module (its
named_parameters(), and those named_buffers() the layout holds). The tensors
are held by reference and read and written in place at every refit.
Raises ValueError when the layout does not divide the model.)doc")
      .def(py::init<PySpec, const ParallelLayout&, int, int, py::handle>(),
           py::arg("spec"), py::arg("layout"), py::arg("rank"),
           py::arg("world_size"), py::arg("params"))
      .def_property_readonly(
          "spec", [](const PyModel& m) { return PySpec{m.model().spec}; })
      .def_property_readonly("layout",
                             [](const PyModel& m) { return m.model().layout; })
      .def_property_readonly("rank",
                             [](const PyModel& m) { return m.model().rank; })
      .def_property_readonly(
          "world_size", [](const PyModel& m) { return m.model().world_size; })
      .def_property_readonly(
          "device", &PyModel::device,
          "\"cuda\" when it holds CUDA tensors (a \"local\" refit then "
          "moves them with cudaMemcpy), else \"cpu\".")
      .def_property_readonly("names", &PyModel::names,
                             "The bound tensor names, in the given order.")
      .def("__getitem__", &PyModel::tensor, py::arg("name"))
      .def("__len__", [](const PyModel& m) { return m.names().size(); })
      .def("__repr__", [](const PyModel& m) {
        return "ShardedModel(" + m.model().layout.ToString() + ", rank " +
               std::to_string(m.model().rank) + " of " +
               std::to_string(m.model().world_size) + ", " +
               std::to_string(m.names().size()) + " tensors)";
      });

  m.def("shard_shapes", &ShardShapesDict, py::arg("spec"), py::arg("layout"),
        py::arg("rank"), py::arg("world_size"),
        py::arg("transform") = py::none(), py::arg("stacked_experts") = false,
        R"doc(
The tensors rank `rank` of `layout` (world `world_size`) holds, in spec
order: {Megatron local name: (shape, dtype)}, dtype a safetensors name
("BF16", "F32", "F8_E4M3", "U8"). Names are those `refit run --save` writes
(layer and expert indices local to the rank). Vocabulary shards include
their padding rows. With `transform` (a `refit run --dst-dtype` value such as
"fp8-block" or "mxfp8") the destination's shapes and dtypes, each quantised
weight followed by its scales (NAME_scale_inv F32 or NAME_scale U8/E8M0).
With `stacked_experts=True` each layer's routed experts are listed as one
stacked tensor per weight (and per scale tensor), e.g.
"decoder.layers.0.mlp.experts.linear_fc1.weight" of shape
(E_local, 2 * I_etp, H): vLLM's FusedMoE w13_weight, slice i local expert i
(w2_weight: linear_fc2.weight, (E_local, H, I_etp)). Either form binds.
Raises ValueError for a layout that does not divide the model or an unknown
transform.)doc");

  m.def("rank_coordinates", &RankCoordinates, py::arg("spec"),
        py::arg("layout"), py::arg("rank"), py::arg("world_size"), R"doc(
Where rank `rank` of `layout` sits, in Megatron's rank order tp-cp-ep-dp-pp
(parallel_state.py RankGenerator): {tp, cp, dp, pp, etp, ep, edp,
experts_per_rank}. Raises ValueError for a layout that does not divide the
model or a rank outside the world.)doc");

  m.def("torch_dtype_name", [](const std::string& dtype) {
    return TorchDTypeName(ValueOrRaise(ParseDType(dtype)));
  });

  py::class_<PyCheckpoint>(m, "_Checkpoint")
      .def(py::init<const std::string&, bool>(), py::arg("path"),
           py::arg("mtp") = false)
      .def_property_readonly("spec", &PyCheckpoint::spec)
      .def("fill", &PyCheckpoint::Fill, py::arg("layout"), py::arg("rank"),
           py::arg("world_size"), py::arg("tensors"));
}

}  // namespace refit::python
