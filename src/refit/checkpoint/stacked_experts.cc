#include "refit/checkpoint/stacked_experts.h"

#include <regex>

namespace refit::exec {

namespace {

// Where a per-expert tensor lies in its stack: the stacked name, the expert,
// and which half of gate_up_proj (0: gate, 1: up; down_proj: 0 of 1).
struct StackPlace {
  std::string stacked;
  int64_t expert = 0;
  int64_t half = 0;
  int64_t halves = 1;
};

bool PlaceOf(const std::string& name, StackPlace* out) {
  static const std::regex kExpert(
      R"(^(.*\.experts\.)(\d+)\.(gate_proj|up_proj|down_proj|w1|w3|w2)\.weight$)");
  std::smatch m;
  if (!std::regex_match(name, m, kExpert)) return false;
  const std::string kind = m[3].str();
  const bool down = kind == "down_proj" || kind == "w2";
  out->stacked = m[1].str() + (down ? "down_proj" : "gate_up_proj");
  out->expert = std::stoll(m[2].str());
  out->half = kind == "up_proj" || kind == "w3" ? 1 : 0;
  out->halves = down ? 1 : 2;
  return true;
}

std::string Shape(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace

Result<const io::TensorRef*> StackedExperts::Find(
    const io::Checkpoint& ckpt, const std::string& name,
    const std::vector<int64_t>& shape, int num_experts,
    const std::string& where) {
  StackPlace at;
  if (shape.size() != 2 || !PlaceOf(name, &at)) return nullptr;
  const io::TensorRef* stack = ckpt.Find(at.stacked);
  if (stack == nullptr) return nullptr;
  const std::vector<int64_t> want = {num_experts, at.halves * shape[0],
                                     shape[1]};
  if (stack->info->shape != want) {
    return FailedPrecondition(where + ": stacked expert tensor '" + at.stacked +
                              "' has shape " + Shape(stack->info->shape) +
                              ", config says " + Shape(want));
  }
  const uint64_t part = static_cast<uint64_t>(shape[0] * shape[1]) *
                        DTypeSize(stack->info->dtype);
  const uint64_t offset = (at.expert * at.halves + at.half) * part;
  auto slice = std::make_shared<Slice>();
  slice->info = {name, stack->info->dtype, shape, stack->info->offset + offset,
                 part};
  slice->ref = {&slice->info, stack->data + offset, stack->file};
  slices_.push_back(slice);
  used_.insert(at.stacked);
  return &slices_.back()->ref;
}

}  // namespace refit::exec
