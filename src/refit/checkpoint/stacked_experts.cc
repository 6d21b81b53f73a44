#include "refit/checkpoint/stacked_experts.h"

#include <regex>

namespace refit::exec {

namespace {

std::string Shape(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace

std::optional<StackedExpertPlace> StackedExpertPlaceOf(
    const std::string& name) {
  static const std::regex kExpert(
      R"(^(.*\.experts\.)(\d+)\.(gate_proj|up_proj|down_proj|w1|w3|w2)\.weight$)");
  std::smatch m;
  if (!std::regex_match(name, m, kExpert)) return std::nullopt;
  const std::string kind = m[3].str();
  const bool down = kind == "down_proj" || kind == "w2";
  StackedExpertPlace at;
  at.stacked = m[1].str() + (down ? "down_proj" : "gate_up_proj");
  at.expert = std::stoll(m[2].str());
  at.half = kind == "up_proj" || kind == "w3" ? 1 : 0;
  at.halves = down ? 1 : 2;
  return at;
}

Result<const io::TensorRef*> StackedExperts::Find(
    const io::Checkpoint& ckpt, const std::string& name,
    const std::vector<int64_t>& shape, int num_experts,
    const std::string& where, const std::string& suffix) {
  std::optional<StackedExpertPlace> place = StackedExpertPlaceOf(name);
  if (shape.size() != 2 || !place) return nullptr;
  StackedExpertPlace& at = *place;
  at.stacked += suffix;
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
  slice->info = {name + suffix, stack->info->dtype, shape,
                 stack->info->offset + offset, part};
  slice->ref = {&slice->info, stack->data + offset, stack->file};
  slices_.push_back(slice);
  used_.insert(at.stacked);
  return &slices_.back()->ref;
}

}  // namespace refit::exec
