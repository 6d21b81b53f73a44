#include "refit/core/shard.h"

#include <algorithm>

namespace refit {

namespace {

// How the layout's family cuts `p` (ParamSpec::engine_replicated).
ShardKind KindIn(const ParamSpec& p, const Layout& layout) {
  const bool whole =
      p.engine_replicated && layout.family() != LayoutFamily::kMegatron;
  return whole ? ShardKind::kReplicated : p.shard;
}

bool IsSplit(const ParamSpec& p, const Layout& layout) {
  return KindIn(p, layout) != ShardKind::kReplicated;
}

int GroupSize(const ParamSpec& p, const Layout& layout) {
  return p.tp_group == TpGroup::kExpert ? layout.etp() : layout.tp();
}

// Rows the vocabulary is padded to a multiple of, per family: Megatron's
// make_vocab_size_divisible_by (128) times TP; vLLM's and SGLang's
// VocabParallelEmbedding padding_size (64, DEFAULT_VOCAB_PADDING_SIZE);
// none for whole HF tensors.
int64_t VocabPadUnit(LayoutFamily family, int n) {
  switch (family) {
    case LayoutFamily::kMegatron:
      return int64_t{128} * n;
    case LayoutFamily::kVllm:
    case LayoutFamily::kSglang:
      return 64;
    case LayoutFamily::kHf:
      return 1;
  }
  return 1;
}

// Appends a segment, merged into the last one when both its global and local
// ranges continue it.
void AppendSegment(std::vector<Segment>& segs, Segment s) {
  if (!segs.empty()) {
    Segment& last = segs.back();
    if (last.global_start + last.length == s.global_start &&
        last.local_start + last.length == s.local_start) {
      last.length += s.length;
      return;
    }
  }
  segs.push_back(s);
}

// The QKV rows of TP rank `coord` out of `n` as vLLM's QKVParallelLinear
// loads them (linear.py weight_loader: shard ids q, k, v at offsets 0,
// num_heads * head_size, + num_kv_heads * head_size of the rank's tensor):
// [q rows of the rank's heads; k rows of its KV heads; v rows], cut from the
// Megatron tensor interleaved per query group ([q_g; k_g; v_g] for each group
// g). With n > groups each rank holds one KV head, that of group
// coord / (n / groups) (num_kv_head_replicas).
void EngineQkvShard(const ParamSpec& p, int n, int coord, ShardGeometry& g) {
  const int64_t groups = p.interleave_groups;
  const int64_t qg = p.hf_rows[0] / groups, kg = p.hf_rows[1] / groups;
  const int64_t block = qg + 2 * kg;  // one group's rows
  if (n > groups) {
    const int64_t reps = n / groups, group = coord / reps, hq = qg / reps;
    const int64_t at = group * block;
    AppendSegment(g.segments, {at + (coord % reps) * hq, 0, hq});
    AppendSegment(g.segments, {at + qg, hq, kg});
    AppendSegment(g.segments, {at + qg + kg, hq + kg, kg});
    g.local_shape[0] = hq + 2 * kg;
    return;
  }
  const int64_t local = groups / n, first = coord * local;
  const int64_t offsets[3] = {0, qg, qg + kg};
  const int64_t lengths[3] = {qg, kg, kg};
  int64_t at = 0;
  for (int part = 0; part < 3; ++part) {
    for (int64_t j = 0; j < local; ++j) {
      AppendSegment(g.segments,
                    {(first + j) * block + offsets[part], at, lengths[part]});
      at += lengths[part];
    }
  }
  g.local_shape[0] = at;
}

// Megatron's fused QKV (one query group too: [q; k; v]).
bool IsInterleavedQkv(const ParamSpec& p) {
  return p.shard == ShardKind::kColumn && p.hf_rows.size() == 3;
}

}  // namespace

int64_t ShardGeometry::LocalElements() const {
  int64_t n = 1;
  for (int64_t d : local_shape) n *= d;
  return n;
}

int HolderStage(const ParamSpec& p, size_t param_index, const Layout& layout) {
  if (!PartHolds(layout.config().part, p)) return -1;
  switch (p.placement) {
    case Placement::kFirstStage:
      return 0;
    case Placement::kLastStage:
      if (p.data_id != param_index && layout.pp() == 1) return -1;
      return layout.pp() - 1;
    case Placement::kLayer:
      return layout.StageOfLayer(p.layer);
  }
  return -1;
}

int HolderClass(const ParamSpec& p, size_t param_index, const Layout& layout) {
  const int stage = HolderStage(p, param_index, layout) + 1;
  const int owner = p.expert >= 0 ? layout.ExpertClass(p.expert) + 1 : 0;
  const int split =
      IsSplit(p, layout) ? 1 + (p.tp_group == TpGroup::kExpert) : 0;
  return (stage * (layout.ExpertClassCount() + 1) + owner) * 3 + split;
}

int HolderClassCount(const Layout& layout) {
  return (layout.pp() + 1) * (layout.ExpertClassCount() + 1) * 3;
}

bool HoldsParam(const ParamSpec& p, size_t param_index, const Layout& layout,
                int rank) {
  if (HolderStage(p, param_index, layout) != layout.PpRank(rank)) return false;
  if (p.expert >= 0) {
    return layout.LocalExpertSlot(layout.EpRank(rank), p.expert) >= 0;
  }
  return true;
}

int ShardCoord(const ParamSpec& p, const Layout& layout, int rank) {
  if (!IsSplit(p, layout)) return 0;
  return p.tp_group == TpGroup::kExpert ? layout.EtpRank(rank)
                                        : layout.TpRank(rank);
}

int ShardCoordCount(const ParamSpec& p, const Layout& layout) {
  return IsSplit(p, layout) ? GroupSize(p, layout) : 1;
}

ShardGeometry ShardOf(const ParamSpec& p, const Layout& layout, int coord) {
  ShardGeometry g;
  ShardOfInto(p, layout, coord, &g);
  return g;
}

void ShardOfInto(const ParamSpec& p, const Layout& layout, int coord,
                 ShardGeometry* out) {
  ShardGeometry& g = *out;
  g.local_shape = p.shape;
  if (g.local_shape.empty()) g.local_shape = {1};
  g.dim = 0;
  g.segments.clear();
  const int n = GroupSize(p, layout);
  const int64_t rows = g.local_shape[0];
  switch (KindIn(p, layout)) {
    case ShardKind::kReplicated:
      g.segments = {{0, 0, rows}};
      break;
    case ShardKind::kColumn: {
      if (layout.family() != LayoutFamily::kMegatron && IsInterleavedQkv(p)) {
        EngineQkvShard(p, n, coord, g);
        break;
      }
      const int64_t len = rows / n;
      g.local_shape[0] = len;
      g.segments = {{coord * len, 0, len}};
      break;
    }
    case ShardKind::kRow: {
      const int64_t len = p.shape[1] / n;
      g.dim = 1;
      g.local_shape[1] = len;
      g.segments = {{coord * len, 0, len}};
      break;
    }
    case ShardKind::kGatedColumn: {
      const int64_t half = rows / 2, len = half / n;
      g.local_shape[0] = 2 * len;
      g.segments = {{coord * len, 0, len}, {half + coord * len, len, len}};
      // A routed expert's w13 as [up_r; gate_r] (ParallelConfig::
      // w13_up_first): the same segments, the up rows first.
      if (p.tp_group == TpGroup::kExpert && layout.config().w13_up_first) {
        g.segments = {{half + coord * len, 0, len}, {coord * len, len, len}};
      }
      break;
    }
    case ShardKind::kVocab: {
      const int64_t unit = VocabPadUnit(layout.family(), n);
      const int64_t padded = (rows + unit - 1) / unit * unit;
      const int64_t per = padded / n, start = coord * per;
      const int64_t len = std::clamp<int64_t>(rows - start, 0, per);
      g.local_shape[0] = per;
      if (len > 0) g.segments = {{start, 0, len}};
      break;
    }
  }
}

std::vector<int> HolderRanks(const ParamSpec& p, size_t param_index,
                             const Layout& layout, int coord) {
  std::vector<int> ranks;
  const int pp = HolderStage(p, param_index, layout);
  if (pp < 0) return ranks;
  if (p.expert >= 0) {
    for (int ep : layout.ExpertEpRanks(p.expert)) {
      for (int edp = 0; edp < layout.edp(); ++edp) {
        ranks.push_back(layout.ExpertRank(coord, ep, edp, pp));
      }
    }
  } else {
    const bool split = IsSplit(p, layout);
    for (int dp = 0; dp < layout.dp(); ++dp) {
      for (int cp = 0; cp < layout.cp(); ++cp) {
        if (split) {
          ranks.push_back(layout.DenseRank(coord, cp, dp, pp));
          continue;
        }
        for (int tp = 0; tp < layout.tp(); ++tp) {
          ranks.push_back(layout.DenseRank(tp, cp, dp, pp));
        }
      }
    }
  }
  std::sort(ranks.begin(), ranks.end());
  return ranks;
}

std::string LocalName(const ParamSpec& p, const Layout& layout, int rank) {
  std::string name = p.name;
  if (p.expert >= 0) {
    const std::string global = std::to_string(p.expert);
    const int local = layout.LocalExpertSlot(layout.EpRank(rank), p.expert);
    name = name.substr(0, name.size() - global.size()) + std::to_string(local);
  }
  if (p.layer >= 0) {
    const std::string prefix =
        "decoder.layers." + std::to_string(p.layer) + ".";
    const int local = p.layer - layout.StageFirstLayer(layout.PpRank(rank));
    name = "decoder.layers." + std::to_string(local) + "." +
           name.substr(prefix.size());
  }
  return name;
}

std::vector<int64_t> BlockPartBounds(const ParamSpec& p, int dim) {
  const int64_t extent = p.shape.empty() ? 1 : p.shape[dim];
  std::vector<int64_t> bounds = {0};
  if (dim == 0 && p.interleave_groups == 1) {
    for (size_t i = 0; i + 1 < p.hf_rows.size(); ++i) {
      bounds.push_back(bounds.back() + p.hf_rows[i]);
    }
  }
  bounds.push_back(extent);
  return bounds;
}

ShardGeometry SplitAtBlockParts(const ParamSpec& p, const ShardGeometry& g) {
  const std::vector<int64_t> bounds = BlockPartBounds(p, g.dim);
  ShardGeometry out = g;
  out.segments.clear();
  for (const Segment& s : g.segments) {
    int64_t at = s.global_start;
    const int64_t end = s.global_start + s.length;
    while (at < end) {
      const int64_t cut =
          *std::upper_bound(bounds.begin(), bounds.end() - 1, at);
      const int64_t stop = std::min(end, cut);
      out.segments.push_back(
          {at, s.local_start + (at - s.global_start), stop - at});
      at = stop;
    }
  }
  return out;
}

ShardGeometry ExpandToBlocks(const ParamSpec& p, const ShardGeometry& g,
                             int64_t block) {
  if (block <= 1 || p.shape.empty()) return g;
  const std::vector<int64_t> bounds = BlockPartBounds(p, g.dim);
  ShardGeometry out = SplitAtBlockParts(p, g);
  int64_t local = 0;
  for (Segment& s : out.segments) {
    const auto part =
        std::upper_bound(bounds.begin(), bounds.end(), s.global_start) - 1;
    const int64_t base = *part, limit = *(part + 1);
    const int64_t begin = base + (s.global_start - base) / block * block;
    const int64_t end = std::min(
        base + (s.global_start + s.length - base + block - 1) / block * block,
        limit);
    s = Segment{begin, local, end - begin};
    local += s.length;
  }
  out.local_shape[g.dim] = local;
  return out;
}

std::vector<Box> ShardBoxes(const ParamSpec& p, const ShardGeometry& g) {
  std::vector<Box> boxes;
  std::vector<int64_t> shape = p.shape;
  if (shape.empty()) shape = {1};
  for (const Segment& s : g.segments) {
    Box b{std::vector<int64_t>(shape.size(), 0), shape};
    b.start[g.dim] = s.global_start;
    b.extent[g.dim] = s.length;
    boxes.push_back(std::move(b));
  }
  return boxes;
}

}  // namespace refit
