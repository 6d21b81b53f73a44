// Binding one side of one rank: the caller's tensors (a ShardedModel) checked
// against the shards the layout gives that rank, then pointed to by the
// executor's views. Nothing is read or written here.
//
// Routed experts bind per expert ("decoder.layers.L.mlp.experts.linear_fc1.
// weight<i>", i the rank's local expert index) or stacked: one tensor
// "decoder.layers.L.mlp.experts.linear_fc1.weight" of shape [E_local, ...]
// whose slice i is expert i's shard (likewise linear_fc2 and each scale
// tensor NAME_scale_inv / NAME_scale). Slice i of a contiguous stacked tensor
// is a contiguous per-expert shard, so a stack only points each expert's
// parameter at data + i * slice bytes: the plan and the executor are the same
// either way. docs/LAYOUTS.md §1 relates the stacks to vLLM's FusedMoE
// w13_weight / w2_weight.
#ifndef REFIT_EXEC_SESSION_TENSOR_BINDING_H_
#define REFIT_EXEC_SESSION_TENSOR_BINDING_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "refit/core/format/scale_layout.h"
#include "refit/exec/dst_tensors.h"
#include "refit/exec/shard_arena.h"
#include "refit/exec/shard_scales.h"
#include "refit/sharded_model.h"

namespace refit::exec {

class SideBinding {
 public:
  /// Source or destination: names errors.
  enum class Side : uint8_t { kSource, kDestination };

  SideBinding() = default;
  /// Where Bind points a tensor: parameter `param`'s shard, or its scales.
  using Sink = std::function<void(uint32_t param, bool scale, std::byte*)>;
  /// The scale layout of a held parameter (bytes == 0: no scale tensor).
  using ScaleLayoutOfParam = std::function<const ScaleLayout&(uint32_t)>;

  /// The tensors of `arena` (the side's shards, built from the side's spec:
  /// destination dtypes for a destination) named as in the model of
  /// `layout_rank` of `layout` (in its family's names: LocalTensorParts,
  /// FusedTensorOf), each followed by its scale tensor when `scales` gives it
  /// one.
  SideBinding(const ModelSpec& side_spec, const FormatPlan& formats,
              const Layout& layout, int layout_rank, const ShardArena& arena,
              const ScaleLayoutOfParam& scales, Side side);

  /// Every tensor this side binds, in spec order; with kStacked each stack of
  /// routed-expert tensors in place of its first member (ExpertBinding).
  /// Fused tensors (FusedTensorOf) are always listed whole.
  std::vector<ShardShape> Shapes(
      ExpertBinding experts = ExpertBinding::kPerExpert) const;

  /// A tensor of Shapes(experts) and where its bytes lie: `parts` (data,
  /// bytes), one after another (a stack or a fused tensor has one part per
  /// member).
  struct TensorBytes {
    ShardShape shape;
    std::vector<std::pair<const std::byte*, uint64_t>> parts;
  };
  /// Shapes(experts) with the bytes of the shards of `data` and the scales
  /// `scales(param)`.
  std::vector<TensorBytes> Tensors(
      const ShardArena& data, const std::function<std::byte*(uint32_t)>& scales,
      ExpertBinding experts) const;

  /// Views of memory that already holds these tensors: the shards of `data`
  /// and the scales `scales(param)` (host memory), named as Bind wants them.
  std::unordered_map<std::string, TensorView> Views(
      const ShardArena& data,
      const std::function<std::byte*(uint32_t)>& scales) const;

  /// Checks that `model.tensors` holds exactly these tensors, each
  /// contiguous, of the expected shape and dtype, in a memory kind in
  /// `memory`, non-null, then hands each one's data to `sink`. Each stack of
  /// routed-expert tensors may be bound instead as one stacked tensor
  /// [E_local, ...] (then expert i's data is its slice i), and the members
  /// of a fused tensor as that tensor. The HF parts of one shard (family hf)
  /// must be adjacent views of one buffer.
  /// Errors: "rank R: <side> tensor NAME: <what>" (R is `group_rank`):
  /// kNotFound for a missing tensor, kInvalidArgument for an unknown,
  /// misshapen, mistyped, non-contiguous or inaccessible one, and for a
  /// stacked tensor bound together with a per-expert tensor of its stack.
  Status Bind(const ShardedModel& model, int group_rank,
              const std::vector<MemoryKind>& memory, const Sink& sink) const;

 private:
  struct Entry {
    std::string name;
    uint32_t param = 0;
    bool scale = false;  // the scale tensor of `param`
    std::vector<int64_t> shape;
    DType dtype = DType::kBF16;
    uint64_t offset = 0;  // bytes into the shard (an HF part of a shard)
    int group = -1;       // index into groups_ of a stacked or fused member
    int slot = 0;         // its place in that group
  };
  // Tensors that may instead be bound as one: the routed experts of one
  // weight (or its scales) of one layer, stacked along a new dim 0, or the
  // shards of parameters fused along dim 0 (FusedTensorOf).
  struct Group {
    Entry tensor;                   // the group's name, shape and dtype
    std::vector<size_t> members;    // entries_ by slot
    std::vector<uint64_t> offsets;  // bytes of each slot into the tensor
    bool stack = true;              // experts (else fused)
  };
  // Calls `fn(entry, group)` for each tensor Shapes(experts) lists: an entry
  // (group nullptr) or a group (entry nullptr).
  void ForEachListed(
      ExpertBinding experts,
      const std::function<void(const Entry*, const Group*)>& fn) const;
  // Adds the entries of held parameter `p` (and of its scales).
  void AddParam(const ModelSpec& side_spec, const FormatPlan& formats,
                const Layout& layout, int layout_rank, const ShardArena& arena,
                const ScaleLayout& sl, uint32_t p,
                std::unordered_map<std::string, int>* group_index);
  // Puts entries_[entry] (of local expert `local_expert`) into its stack,
  // found or added through `group_index` (groups_ by name).
  void AddToStack(size_t entry, int local_expert, int local_experts,
                  std::unordered_map<std::string, int>* group_index);
  // Puts entries_[entry] into slot `member` of fused tensor `name` (with a
  // "_scale..." suffix for a scale entry).
  void AddToFused(size_t entry, const std::string& name, int member,
                  int members,
                  std::unordered_map<std::string, int>* group_index);
  // Fixes fused groups once every entry is in: shapes and offsets, and drops
  // groups missing a member (their members keep their own names).
  void FinishFused();
  Status Check(const Entry& e, const TensorView* v, int group_rank,
               const std::vector<MemoryKind>& memory) const;
  // The group tensors `model` binds (nullptr: bound by member), checked.
  Result<std::vector<const TensorView*>> BoundGroups(
      const ShardedModel& model, int group_rank,
      const std::vector<MemoryKind>& memory) const;
  Status Unknown(const ShardedModel& model, int group_rank) const;
  // Parts of one shard bound as separate tensors (hf family) must be views
  // of one buffer, one after another.
  Status CheckAdjacent(const Entry& e, const std::byte* data,
                       const std::byte* first, int group_rank) const;
  std::string_view side_name() const;

  Side side_ = Side::kSource;
  std::vector<Entry> entries_;
  std::vector<Group> groups_;
  std::unordered_set<std::string> names_;  // entry and group names
};

/// The model of rank `layout_rank` of `layout` whose tensors already lie in
/// `data` (shards of `side_spec`: destination dtypes for a destination) and
/// `scales` (nullptr: none), as views named as SideBinding::Bind wants them.
/// `spec` is the source spec both sides' models carry.
ShardedModel ViewsOf(std::shared_ptr<const ModelSpec> spec,
                     const ModelSpec& side_spec, const FormatPlan& formats,
                     const Layout& layout, int layout_rank,
                     const ShardArena& data, const ShardScales* scales,
                     SideBinding::Side side);

/// The tensors of destination rank `layout_rank` of `layout` held in `dst`
/// (shards of `dst_spec`), as its family names and groups them
/// (DefaultExpertBinding: vllm / sglang experts stacked), each with where
/// its bytes lie. `dst` must outlive the result.
std::vector<SideBinding::TensorBytes> NamedDstTensors(const ModelSpec& dst_spec,
                                                      const FormatPlan& formats,
                                                      const DstTensors& dst,
                                                      const Layout& layout,
                                                      int layout_rank);

}  // namespace refit::exec

#endif  // REFIT_EXEC_SESSION_TENSOR_BINDING_H_
