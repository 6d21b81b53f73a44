// Shard geometry: which part of a parameter's logical global tensor a rank
// holds, and where it sits in the rank's local tensor.
//
// Every parameter is cut along at most one dimension (`dim`: 0 for column,
// gated, vocabulary and replicated tensors, 1 for row-parallel ones). A shard
// is a list of segments along that dimension; every other dimension is held
// whole. Each segment is the box [global_start, global_start + length) x (all
// other dims) of the global tensor, stored at local_start of the local tensor.
// Rules: layouts.md §1.2 (split dims), §1.4 ([gate_r; up_r]), §1.5 (vocab
// padding), §1.6 (pipeline stages), §1.7 (contiguous expert placement).
#ifndef REFIT_CORE_SHARD_H_
#define REFIT_CORE_SHARD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "refit/core/layout.h"
#include "refit/core/model_spec.h"

namespace refit {

struct Segment {
  int64_t global_start = 0;
  int64_t local_start = 0;
  int64_t length = 0;
};

struct ShardGeometry {
  /// Local tensor shape (vocabulary shards include their padding rows).
  std::vector<int64_t> local_shape;
  int dim = 0;  ///< the dimension the segments run along
  std::vector<Segment> segments;

  int64_t LocalElements() const;
};

/// An axis-aligned box of a global tensor: [start[d], start[d] + extent[d]).
struct Box {
  std::vector<int64_t> start;
  std::vector<int64_t> extent;
};

/// True when layout rank `rank` (in [0, world)) holds parameter `p`:
/// its pipeline stage builds the layer (or holds the embedding / output
/// layer), and for routed experts its EP rank owns the expert. A tied
/// output_layer (data_id != own index) exists only on the last stage of a
/// pipeline with pp > 1 (gpt_model.py, language_module.py).
bool HoldsParam(const ParamSpec& p, size_t param_index, const Layout& layout,
                int rank);

/// The TP coordinate that decides the shard: the TP rank for dense
/// parameters, the ETP rank for routed experts, 0 for replicated ones.
int ShardCoord(const ParamSpec& p, const Layout& layout, int rank);

/// Number of distinct shard coordinates (TP, ETP or 1).
int ShardCoordCount(const ParamSpec& p, const Layout& layout);

/// Geometry of the shard at coordinate `coord` (see ShardCoord).
ShardGeometry ShardOf(const ParamSpec& p, const Layout& layout, int coord);

/// ShardOf into `out`, reusing its storage: no allocation once it has held a
/// geometry with as many dimensions and segments.
void ShardOfInto(const ParamSpec& p, const Layout& layout, int coord,
                 ShardGeometry* out);

/// All ranks of the layout holding parameter `p` at shard coordinate `coord`,
/// ascending (its data-parallel / context-parallel replicas).
std::vector<int> HolderRanks(const ParamSpec& p, size_t param_index,
                             const Layout& layout, int coord);

/// The pipeline stage holding parameter `p`, or -1 when no stage does (a tied
/// output layer without a pipeline, a parameter outside the layout's part).
int HolderStage(const ParamSpec& p, size_t param_index, const Layout& layout);

/// Parameters of one holder class have the same ShardCoordCount and the same
/// HolderRanks at every coordinate: the class encodes the holding stage, the
/// EP rank owning a routed expert and the split. In [0, HolderClassCount).
/// Lets callers compute HolderRanks once per class.
int HolderClass(const ParamSpec& p, size_t param_index, const Layout& layout);
int HolderClassCount(const Layout& layout);

/// The name the parameter has in the model of `rank`: local layer index within
/// its pipeline stage and local expert index within its EP rank, e.g.
/// "decoder.layers.0.mlp.experts.linear_fc1.weight3".
std::string LocalName(const ParamSpec& p, const Layout& layout, int rank);

/// Where block grids restart along dimension `dim` of `p`: the start of every
/// Hugging Face tensor concatenated along dim 0 (gate_proj and up_proj of a
/// gated fc1: each keeps its own 128-row blocks, as its weight_scale_inv does
/// and as vLLM's merged linears load them), plus the extent. {0, extent}
/// otherwise (an interleaved QKV is blocked as the fused tensor).
std::vector<int64_t> BlockPartBounds(const ParamSpec& p, int dim);

/// `g` with its segments cut where a block part starts (BlockPartBounds), in
/// the same local layout: every segment then lies inside one part.
ShardGeometry SplitAtBlockParts(const ParamSpec& p, const ShardGeometry& g);

/// SplitAtBlockParts(g) with every segment widened along g.dim to whole
/// blocks of `block` elements of its part: [part + floor((start - part) /
/// block) * block, min(part + ceil((end - part) / block) * block, part end)),
/// laid out one after the other in the local tensor (local_shape along g.dim
/// is their sum). The receive buffer of a destination shard that must
/// quantise whole blocks it only partly holds (a TP cut through a 128-row
/// block of a block-FP8 weight; layouts.md §4.1). block <= 1 returns `g`.
/// Widened segments of one shard may overlap (the planner then reports the
/// tensor as written twice).
ShardGeometry ExpandToBlocks(const ParamSpec& p, const ShardGeometry& g,
                             int64_t block);

/// The shard's segments as boxes of the global tensor.
std::vector<Box> ShardBoxes(const ParamSpec& p, const ShardGeometry& g);

}  // namespace refit

#endif  // REFIT_CORE_SHARD_H_
