#include "refit/exec/session/shadow_copy.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

namespace refit::exec {

namespace {

// A region's shadow starts at the same address modulo this many bytes as
// its caller's memory, so every view keeps its alignment up to a cache line.
constexpr uint64_t kAlign = 64;

// A view whose bytes the refit may write once bound: binding refuses the
// others (kInvalidArgument) before any byte moves.
bool Mappable(const TensorView& v) {
  if (v.data == nullptr || !v.contiguous()) return false;
  for (int64_t d : v.shape) {
    if (d < 0) return false;
  }
  return v.nbytes() > 0;
}

// Caller spans (first byte, size) of the mappable views, merged where they
// overlap or touch, by address.
std::vector<std::pair<std::byte*, uint64_t>> MergedSpans(
    const ShardedModel& dst) {
  std::vector<std::pair<std::byte*, uint64_t>> spans, merged;
  for (const auto& [name, view] : dst.tensors) {
    if (!Mappable(view)) continue;
    spans.emplace_back(static_cast<std::byte*>(view.data), view.nbytes());
  }
  std::sort(spans.begin(), spans.end());
  for (const auto& [at, size] : spans) {
    if (merged.empty() || at > merged.back().first + merged.back().second) {
      merged.emplace_back(at, size);
      continue;
    }
    auto& [first, merged_size] = merged.back();
    merged_size = std::max<uint64_t>(merged_size, at + size - first);
  }
  return merged;
}

}  // namespace

Status ShadowCopy::CheckHost(const ShardedModel& dst, int rank) {
  std::vector<const std::string*> names;
  for (const auto& [name, view] : dst.tensors) {
    if (view.memory != MemoryKind::kHost) names.push_back(&name);
  }
  if (names.empty()) return OkStatus();
  const std::string& first = **std::min_element(
      names.begin(), names.end(),
      [](const std::string* a, const std::string* b) { return *a < *b; });
  return InvalidArgument(
      "rank " + std::to_string(rank) + ": destination tensor " + first +
      ": atomic needs host memory, not " +
      std::string(MemoryKindName(dst.tensors.at(first).memory)));
}

Result<ShadowCopy> ShadowCopy::Create(const ShardedModel& dst, int rank,
                                      ShadowCopy* previous) {
  REFIT_RETURN_IF_ERROR(CheckHost(dst, rank));
  ShadowCopy s;
  for (const auto& [at, size] : MergedSpans(dst)) {
    Region r;
    r.caller = at;
    r.size = size;
    s.regions_.push_back(std::move(r));
  }
  s.Allocate(previous);
  s.Map(dst);
  return s;
}

// Moves the memory of `previous`'s region at the same caller address and of
// the same size into `r`; false when there is none.
bool ShadowCopy::Recycle(Region& r, ShadowCopy* previous) {
  if (previous == nullptr) return false;
  std::vector<Region>& old = previous->regions_;
  auto it = std::lower_bound(
      old.begin(), old.end(), r.caller,
      [](const Region& p, const std::byte* at) { return p.caller < at; });
  if (it == old.end() || it->caller != r.caller || it->size != r.size ||
      !it->storage) {
    return false;
  }
  r.storage = std::move(it->storage);
  r.shadow = it->shadow;
  return true;
}

void ShadowCopy::Allocate(ShadowCopy* previous) {
  for (Region& r : regions_) {
    bytes_ += r.size;
    if (Recycle(r, previous)) continue;
    r.storage = std::make_unique_for_overwrite<std::byte[]>(r.size + kAlign);
    const uintptr_t base = reinterpret_cast<uintptr_t>(r.storage.get());
    const uintptr_t want = reinterpret_cast<uintptr_t>(r.caller) % kAlign;
    r.shadow = r.storage.get() + (want + kAlign - base % kAlign) % kAlign;
  }
}

void ShadowCopy::Map(const ShardedModel& dst) {
  model_ = dst;
  for (auto& [name, view] : model_.tensors) {
    if (!Mappable(view)) continue;
    std::byte* at = static_cast<std::byte*>(view.data);
    // The region that starts at or before `at` (it holds all of the view).
    auto it = std::upper_bound(
        regions_.begin(), regions_.end(), at,
        [](const std::byte* p, const Region& r) { return p < r.caller; });
    const Region& r = *std::prev(it);
    view.data = r.shadow + (at - r.caller);
  }
}

void ShadowCopy::Fill() {
  for (const Region& r : regions_) std::memcpy(r.shadow, r.caller, r.size);
}

void ShadowCopy::Publish() const {
  for (const Region& r : regions_) std::memcpy(r.caller, r.shadow, r.size);
}

}  // namespace refit::exec
