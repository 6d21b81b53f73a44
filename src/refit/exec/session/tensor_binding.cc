#include "refit/exec/session/tensor_binding.h"

#include <algorithm>

namespace refit::exec {

namespace {

// The name a scale tensor of `f` takes beside its weight NAME.
std::string ScaleName(const std::string& name, const ParamFormat& f,
                      SideBinding::Side side) {
  const bool e8m0 =
      side == SideBinding::Side::kDestination && f.kind == FormatKind::kMxfp8;
  return name + (e8m0 ? "_scale" : "_scale_inv");
}

std::vector<int64_t> ScaleShape(const ScaleLayout& sl, const ParamFormat& f,
                                SideBinding::Side side) {
  if (side == SideBinding::Side::kDestination && f.swizzled) {
    return {static_cast<int64_t>(sl.bytes)};
  }
  return {sl.rows, sl.cols};
}

}  // namespace

SideBinding::SideBinding(const ModelSpec& side_spec, const FormatPlan& formats,
                         const Layout& layout, int layout_rank,
                         const ShardArena& arena,
                         const ScaleLayoutOfParam& scales, Side side)
    : side_(side) {
  for (uint32_t p : arena.params()) {
    const ParamSpec& ps = side_spec.params[p];
    Entry e{LocalName(ps, layout, layout_rank), p, false,
            arena.geometry(p).local_shape, ps.dtype};
    const ScaleLayout& sl = scales(p);
    entries_.push_back(e);
    if (sl.bytes == 0) continue;
    const ParamFormat& f = formats.params[p];
    entries_.push_back({ScaleName(e.name, f, side), p, true,
                        ScaleShape(sl, f, side), sl.dtype});
  }
  for (const Entry& e : entries_) names_.insert(e.name);
}

std::vector<ShardShape> SideBinding::Shapes() const {
  std::vector<ShardShape> out;
  out.reserve(entries_.size());
  for (const Entry& e : entries_) out.push_back({e.name, e.shape, e.dtype});
  return out;
}

std::unordered_map<std::string, TensorView> SideBinding::Views(
    const ShardArena& data,
    const std::function<std::byte*(uint32_t)>& scales) const {
  std::unordered_map<std::string, TensorView> out;
  for (const Entry& e : entries_) {
    std::byte* at = e.scale ? scales(e.param) : data.data(e.param);
    out[e.name] = TensorView{at, e.dtype, e.shape, {}, MemoryKind::kHost};
  }
  return out;
}

std::string_view SideBinding::side_name() const {
  return side_ == Side::kSource ? "source" : "destination";
}

Status SideBinding::Check(const Entry& e, const TensorView* v, int group_rank,
                          const std::vector<MemoryKind>& memory) const {
  std::string what;
  if (v == nullptr) {
    what = "missing (expected " + ShapeString(e.shape) + " " +
           std::string(DTypeName(e.dtype)) + ")";
  } else if (v->dtype != e.dtype) {
    what = "dtype " + std::string(DTypeName(v->dtype)) + ", expected " +
           std::string(DTypeName(e.dtype));
  } else if (v->shape != e.shape) {
    what =
        "shape " + ShapeString(v->shape) + ", expected " + ShapeString(e.shape);
  } else if (!v->contiguous()) {
    what = "not contiguous (strides " + ShapeString(v->strides) + ")";
  } else if (std::find(memory.begin(), memory.end(), v->memory) ==
             memory.end()) {
    what = std::string(MemoryKindName(v->memory)) +
           " memory, which this transport cannot access";
  } else if (v->data == nullptr && v->nbytes() > 0) {
    what = "null data pointer";
  } else {
    return OkStatus();
  }
  return Status(
      v == nullptr ? StatusCode::kNotFound : StatusCode::kInvalidArgument,
      "rank " + std::to_string(group_rank) + ": " + std::string(side_name()) +
          " tensor " + e.name + ": " + what);
}

Status SideBinding::Unknown(const ShardedModel& model, int group_rank) const {
  std::vector<std::string> extra;
  for (const auto& [name, view] : model.tensors) {
    if (!names_.contains(name)) extra.push_back(name);
  }
  std::sort(extra.begin(), extra.end());
  return InvalidArgument("rank " + std::to_string(group_rank) + ": " +
                         std::string(side_name()) + " tensor " + extra[0] +
                         ": not a tensor of this rank's model (" +
                         std::to_string(extra.size()) + " unknown)");
}

Status SideBinding::Bind(const ShardedModel& model, int group_rank,
                         const std::vector<MemoryKind>& memory,
                         const Sink& sink) const {
  for (const Entry& e : entries_) {
    auto it = model.tensors.find(e.name);
    const TensorView* v = it == model.tensors.end() ? nullptr : &it->second;
    REFIT_RETURN_IF_ERROR(Check(e, v, group_rank, memory));
  }
  if (model.tensors.size() != entries_.size()) {
    return Unknown(model, group_rank);
  }
  for (const Entry& e : entries_) {
    auto* data =
        static_cast<std::byte*>(model.tensors.find(e.name)->second.data);
    sink(e.param, e.scale, data);
  }
  return OkStatus();
}

ShardedModel ViewsOf(std::shared_ptr<const ModelSpec> spec,
                     const ModelSpec& side_spec, const FormatPlan& formats,
                     const Layout& layout, int layout_rank,
                     const ShardArena& data, const ShardScales* scales,
                     SideBinding::Side side) {
  static const ScaleLayout kNone;
  const SideBinding binding(
      side_spec, formats, layout, layout_rank, data,
      [&](uint32_t p) -> const ScaleLayout& {
        return scales != nullptr ? scales->layout(p) : kNone;
      },
      side);
  ShardedModel m{
      std::move(spec), layout.config(), layout_rank, layout.world_size(), {}};
  m.tensors = binding.Views(data, [&](uint32_t p) {
    return scales != nullptr ? scales->data(p) : nullptr;
  });
  return m;
}

}  // namespace refit::exec
