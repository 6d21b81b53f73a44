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

// The name of the stack holding `local_name`, the tensor of local expert
// `local_expert`: its name without the expert index ("...weight3" ->
// "...weight"), before any scale suffix.
std::string StackName(const std::string& local_name, int local_expert) {
  return local_name.substr(
      0, local_name.size() - std::to_string(local_expert).size());
}

uint64_t Bytes(const std::vector<int64_t>& shape, DType dtype) {
  uint64_t n = DTypeSize(dtype);
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
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
  const int local_experts = layout.ExpertsPerRank();
  std::unordered_map<std::string, int> stack_index;  // stacks_ by name
  for (uint32_t p : arena.params()) {
    const ParamSpec& ps = side_spec.params[p];
    Entry e{LocalName(ps, layout, layout_rank), p, false,
            arena.geometry(p).local_shape, ps.dtype};
    const ScaleLayout& sl = scales(p);
    const int local_expert =
        ps.expert - layout.EpRank(layout_rank) * local_experts;
    entries_.push_back(e);
    if (ps.expert >= 0) {
      AddToStack(entries_.size() - 1, local_expert, local_experts,
                 &stack_index);
    }
    if (sl.bytes == 0) continue;
    const ParamFormat& f = formats.params[p];
    entries_.push_back({ScaleName(e.name, f, side), p, true,
                        ScaleShape(sl, f, side), sl.dtype});
    if (ps.expert >= 0) {
      AddToStack(entries_.size() - 1, local_expert, local_experts,
                 &stack_index);
    }
  }
  for (const Entry& e : entries_) names_.insert(e.name);
  for (const Stack& s : stacks_) names_.insert(s.tensor.name);
}

void SideBinding::AddToStack(
    size_t entry, int local_expert, int local_experts,
    std::unordered_map<std::string, int>* stack_index) {
  Entry& e = entries_[entry];
  const std::string base =
      StackName(e.scale ? e.name.substr(0, e.name.rfind("_scale")) : e.name,
                local_expert);
  const std::string name =
      base + (e.scale ? e.name.substr(e.name.rfind("_scale")) : "");
  auto [at, added] =
      stack_index->try_emplace(name, static_cast<int>(stacks_.size()));
  if (added) {
    Stack s{{name, e.param, e.scale, {local_experts}, e.dtype},
            std::vector<size_t>(local_experts, entries_.size())};
    s.tensor.shape.insert(s.tensor.shape.end(), e.shape.begin(), e.shape.end());
    stacks_.push_back(std::move(s));
  }
  e.stack = at->second;
  e.slot = local_expert;
  stacks_[e.stack].members[local_expert] = entry;
}

std::vector<ShardShape> SideBinding::Shapes(ExpertBinding experts) const {
  std::vector<ShardShape> out;
  out.reserve(entries_.size());
  for (const Entry& e : entries_) {
    if (experts == ExpertBinding::kPerExpert || e.stack < 0) {
      out.push_back({e.name, e.shape, e.dtype});
    } else if (e.slot == 0) {
      const Entry& s = stacks_[e.stack].tensor;
      out.push_back({s.name, s.shape, s.dtype});
    }
  }
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
           std::string(DTypeName(e.dtype));
    if (e.stack >= 0) {
      const Entry& s = stacks_[e.stack].tensor;
      what +=
          ", or its experts stacked as " + s.name + " " + ShapeString(s.shape);
    }
    what += ")";
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

Result<std::vector<const TensorView*>> SideBinding::BoundStacks(
    const ShardedModel& model, int group_rank,
    const std::vector<MemoryKind>& memory) const {
  std::vector<const TensorView*> bound(stacks_.size(), nullptr);
  for (size_t i = 0; i < stacks_.size(); ++i) {
    const Stack& s = stacks_[i];
    auto it = model.tensors.find(s.tensor.name);
    if (it == model.tensors.end()) continue;
    for (size_t m : s.members) {
      if (!model.tensors.contains(entries_[m].name)) continue;
      return InvalidArgument(
          "rank " + std::to_string(group_rank) + ": " +
          std::string(side_name()) + " tensor " + s.tensor.name +
          ": bound both stacked and per expert (as " + entries_[m].name + ")");
    }
    REFIT_RETURN_IF_ERROR(Check(s.tensor, &it->second, group_rank, memory));
    bound[i] = &it->second;
  }
  return bound;
}

Status SideBinding::Bind(const ShardedModel& model, int group_rank,
                         const std::vector<MemoryKind>& memory,
                         const Sink& sink) const {
  REFIT_ASSIGN_OR_RETURN(std::vector<const TensorView*> stacked,
                         BoundStacks(model, group_rank, memory));
  size_t expected = 0;
  for (const Entry& e : entries_) {
    if (e.stack >= 0 && stacked[e.stack] != nullptr) continue;
    auto it = model.tensors.find(e.name);
    const TensorView* v = it == model.tensors.end() ? nullptr : &it->second;
    REFIT_RETURN_IF_ERROR(Check(e, v, group_rank, memory));
    ++expected;
  }
  for (const TensorView* v : stacked) expected += v != nullptr ? 1 : 0;
  if (model.tensors.size() != expected) return Unknown(model, group_rank);
  for (const Entry& e : entries_) {
    std::byte* data = nullptr;
    if (e.stack >= 0 && stacked[e.stack] != nullptr) {
      data = static_cast<std::byte*>(stacked[e.stack]->data) +
             static_cast<uint64_t>(e.slot) * Bytes(e.shape, e.dtype);
    } else {
      data = static_cast<std::byte*>(model.tensors.find(e.name)->second.data);
    }
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
