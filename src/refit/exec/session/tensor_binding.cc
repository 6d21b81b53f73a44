#include "refit/exec/session/tensor_binding.h"

#include <algorithm>
#include <cstdint>
#include <optional>

#include "refit/core/engine_names.h"

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
  std::unordered_map<std::string, int> group_index;  // groups_ by name
  for (uint32_t p : arena.params()) {
    AddParam(side_spec, formats, layout, layout_rank, arena, scales(p), p,
             &group_index);
  }
  FinishFused();
  for (const Entry& e : entries_) names_.insert(e.name);
  for (const Group& g : groups_) names_.insert(g.tensor.name);
}

void SideBinding::AddParam(const ModelSpec& side_spec,
                           const FormatPlan& formats, const Layout& layout,
                           int layout_rank, const ShardArena& arena,
                           const ScaleLayout& sl, uint32_t p,
                           std::unordered_map<std::string, int>* group_index) {
  const ParamSpec& ps = side_spec.params[p];
  const std::vector<int64_t>& shape = arena.geometry(p).local_shape;
  const std::vector<ShardPart> parts =
      LocalTensorParts(ps, layout, layout_rank, shape[0]);
  const uint64_t row_bytes = arena.shard_bytes(p) / shape[0];
  for (const ShardPart& part : parts) {
    Entry e{part.name, p, false, shape, ps.dtype, part.row_begin * row_bytes};
    e.shape[0] = part.rows;
    entries_.push_back(std::move(e));
  }
  const int local_experts = layout.ExpertsPerRank();
  const int local_expert =
      ps.expert >= 0
          ? layout.LocalExpertSlot(layout.EpRank(layout_rank), ps.expert)
          : -1;
  const std::optional<FusedTensor> fused = FusedTensorOf(ps, layout);
  const auto group = [&](size_t entry) {
    if (ps.expert >= 0 && layout.family() != LayoutFamily::kHf) {
      AddToStack(entry, local_expert, local_experts, group_index);
    } else if (fused) {
      AddToFused(entry, fused->name, fused->member, fused->members,
                 group_index);
    }
  };
  group(entries_.size() - 1);
  if (sl.bytes == 0) return;
  const ParamFormat& f = formats.params[p];
  std::vector<int64_t> scale_shape = ScaleShape(sl, f, side_);
  // An HF-part shard (family hf) splits the scale rows of its two gated
  // halves; other fused parameters keep one scale tensor named after the
  // whole shard (QKV: "qkv_proj").
  if (parts.size() == 2 && scale_shape.size() == 2 && sl.rows % 2 == 0) {
    scale_shape[0] /= 2;
    for (int half = 0; half < 2; ++half) {
      entries_.push_back({ScaleName(parts[half].name, f, side_), p, true,
                          scale_shape, sl.dtype, half * sl.bytes / 2});
    }
    return;
  }
  std::string name = parts[0].name;
  if (parts.size() > 1) name = ReplaceNameComponent(name, "q_proj", "qkv_proj");
  entries_.push_back(
      {ScaleName(name, f, side_), p, true, scale_shape, sl.dtype});
  group(entries_.size() - 1);
}

void SideBinding::AddToStack(
    size_t entry, int local_expert, int local_experts,
    std::unordered_map<std::string, int>* group_index) {
  Entry& e = entries_[entry];
  const std::string base =
      StackName(e.scale ? e.name.substr(0, e.name.rfind("_scale")) : e.name,
                local_expert);
  const std::string name =
      base + (e.scale ? e.name.substr(e.name.rfind("_scale")) : "");
  auto [at, added] =
      group_index->try_emplace(name, static_cast<int>(groups_.size()));
  if (added) {
    Group g{{name, e.param, e.scale, {local_experts}, e.dtype},
            std::vector<size_t>(local_experts, entries_.size()),
            std::vector<uint64_t>(local_experts, 0)};
    g.tensor.shape.insert(g.tensor.shape.end(), e.shape.begin(), e.shape.end());
    groups_.push_back(std::move(g));
  }
  e.group = at->second;
  e.slot = local_expert;
  Group& g = groups_[e.group];
  g.members[local_expert] = entry;
  g.offsets[local_expert] = local_expert * Bytes(e.shape, e.dtype);
}

void SideBinding::AddToFused(
    size_t entry, const std::string& name, int member, int members,
    std::unordered_map<std::string, int>* group_index) {
  Entry& e = entries_[entry];
  const std::string full =
      name + (e.scale ? e.name.substr(e.name.rfind("_scale")) : "");
  auto [at, added] =
      group_index->try_emplace(full, static_cast<int>(groups_.size()));
  if (added) {
    // An absent member stays SIZE_MAX (FinishFused then fuses nothing; an
    // index such as entries_.size() would name a later, unrelated entry).
    groups_.push_back({{full, e.param, e.scale, {}, e.dtype},
                       std::vector<size_t>(members, SIZE_MAX),
                       std::vector<uint64_t>(members, 0),
                       false});
  }
  e.group = at->second;
  e.slot = member;
  groups_[e.group].members[member] = entry;
}

void SideBinding::FinishFused() {
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    Group& g = groups_[gi];
    if (g.stack) continue;
    bool whole = true;
    for (size_t m : g.members) whole = whole && m < entries_.size();
    for (size_t m : g.members) {
      if (whole && entries_[m].dtype != g.tensor.dtype) whole = false;
    }
    if (!whole) {  // a member is absent: nothing to fuse
      for (size_t m : g.members) {
        if (m < entries_.size()) entries_[m].group = -1;
      }
      g.members.clear();
      continue;
    }
    uint64_t at = 0;
    int64_t rows = 0;
    for (size_t slot = 0; slot < g.members.size(); ++slot) {
      const Entry& e = entries_[g.members[slot]];
      g.offsets[slot] = at;
      at += Bytes(e.shape, e.dtype);
      rows += e.shape[0];
    }
    g.tensor.shape = entries_[g.members[0]].shape;
    g.tensor.shape[0] = rows;
  }
}

void SideBinding::ForEachListed(
    ExpertBinding experts,
    const std::function<void(const Entry*, const Group*)>& fn) const {
  for (const Entry& e : entries_) {
    const bool stack = e.group >= 0 && groups_[e.group].stack;
    if (e.group < 0 || (stack && experts == ExpertBinding::kPerExpert)) {
      fn(&e, nullptr);
    } else if (e.slot == 0) {
      fn(nullptr, &groups_[e.group]);
    }
  }
}

std::vector<ShardShape> SideBinding::Shapes(ExpertBinding experts) const {
  std::vector<ShardShape> out;
  out.reserve(entries_.size());
  ForEachListed(experts, [&](const Entry* e, const Group* g) {
    const Entry& t = e != nullptr ? *e : g->tensor;
    out.push_back({t.name, t.shape, t.dtype});
  });
  return out;
}

std::vector<SideBinding::TensorBytes> SideBinding::Tensors(
    const ShardArena& data, const std::function<std::byte*(uint32_t)>& scales,
    ExpertBinding experts) const {
  std::vector<TensorBytes> out;
  const auto bytes_of = [&](const Entry& e) {
    const std::byte* at = e.scale ? scales(e.param) : data.data(e.param);
    return std::pair(at + e.offset, Bytes(e.shape, e.dtype));
  };
  ForEachListed(experts, [&](const Entry* e, const Group* g) {
    const Entry& t = e != nullptr ? *e : g->tensor;
    TensorBytes& tb = out.emplace_back();
    tb.shape = {t.name, t.shape, t.dtype};
    if (e != nullptr) {
      tb.parts.push_back(bytes_of(*e));
      return;
    }
    for (size_t m : g->members) tb.parts.push_back(bytes_of(entries_[m]));
  });
  return out;
}

std::unordered_map<std::string, TensorView> SideBinding::Views(
    const ShardArena& data,
    const std::function<std::byte*(uint32_t)>& scales) const {
  std::unordered_map<std::string, TensorView> out;
  for (const Entry& e : entries_) {
    std::byte* at = e.scale ? scales(e.param) : data.data(e.param);
    if (at != nullptr) at += e.offset;
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
    if (e.group >= 0) {
      const Group& g = groups_[e.group];
      what += std::string(g.stack ? ", or its experts stacked as "
                                  : ", or fused as ") +
              g.tensor.name + " " + ShapeString(g.tensor.shape);
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

Result<std::vector<const TensorView*>> SideBinding::BoundGroups(
    const ShardedModel& model, int group_rank,
    const std::vector<MemoryKind>& memory) const {
  std::vector<const TensorView*> bound(groups_.size(), nullptr);
  for (size_t i = 0; i < groups_.size(); ++i) {
    const Group& g = groups_[i];
    if (g.members.empty()) continue;  // dropped (FinishFused)
    auto it = model.tensors.find(g.tensor.name);
    if (it == model.tensors.end()) continue;
    for (size_t m : g.members) {
      if (!model.tensors.contains(entries_[m].name)) continue;
      return InvalidArgument(
          "rank " + std::to_string(group_rank) + ": " +
          std::string(side_name()) + " tensor " + g.tensor.name + ": bound " +
          (g.stack ? "both stacked and per expert" : "both fused and apart") +
          " (as " + entries_[m].name + ")");
    }
    REFIT_RETURN_IF_ERROR(Check(g.tensor, &it->second, group_rank, memory));
    bound[i] = &it->second;
  }
  return bound;
}

Status SideBinding::CheckAdjacent(const Entry& e, const std::byte* data,
                                  const std::byte* first,
                                  int group_rank) const {
  if (data == first + e.offset) return OkStatus();
  return InvalidArgument(
      "rank " + std::to_string(group_rank) + ": " + std::string(side_name()) +
      " tensor " + e.name + ": must lie " + std::to_string(e.offset) +
      " bytes after the first part of its shard (the HF parts of one shard "
      "are views of one buffer: refit.empty_shards makes them so)");
}

Status SideBinding::Bind(const ShardedModel& model, int group_rank,
                         const std::vector<MemoryKind>& memory,
                         const Sink& sink) const {
  REFIT_ASSIGN_OR_RETURN(std::vector<const TensorView*> grouped,
                         BoundGroups(model, group_rank, memory));
  size_t expected = 0;
  for (const Entry& e : entries_) {
    if (e.group >= 0 && grouped[e.group] != nullptr) continue;
    auto it = model.tensors.find(e.name);
    const TensorView* v = it == model.tensors.end() ? nullptr : &it->second;
    REFIT_RETURN_IF_ERROR(Check(e, v, group_rank, memory));
    ++expected;
  }
  for (const TensorView* v : grouped) expected += v != nullptr ? 1 : 0;
  if (model.tensors.size() != expected) return Unknown(model, group_rank);
  const std::byte* first = nullptr;  // the shard's part at offset 0
  for (const Entry& e : entries_) {
    std::byte* data = nullptr;
    if (e.group >= 0 && grouped[e.group] != nullptr) {
      const Group& g = groups_[e.group];
      data =
          static_cast<std::byte*>(grouped[e.group]->data) + g.offsets[e.slot];
    } else {
      data = static_cast<std::byte*>(model.tensors.find(e.name)->second.data);
    }
    if (e.offset == 0) {
      first = data;
      sink(e.param, e.scale, data);
    } else {
      REFIT_RETURN_IF_ERROR(CheckAdjacent(e, data, first, group_rank));
    }
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

std::vector<SideBinding::TensorBytes> NamedDstTensors(const ModelSpec& dst_spec,
                                                      const FormatPlan& formats,
                                                      const DstTensors& dst,
                                                      const Layout& layout,
                                                      int layout_rank) {
  const SideBinding binding(
      dst_spec, formats, layout, layout_rank, dst.data(),
      [&dst](uint32_t p) -> const ScaleLayout& { return dst.scale_layout(p); },
      SideBinding::Side::kDestination);
  return binding.Tensors(
      dst.data(), [&dst](uint32_t p) { return dst.scales(p); },
      DefaultExpertBinding(layout.family()));
}

}  // namespace refit::exec
