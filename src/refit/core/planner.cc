#include "refit/core/planner.h"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <utility>

#include "refit/core/shard.h"

namespace refit {

namespace {

struct Candidate {
  int rank = 0;  // global
  uint32_t param = 0;
};

// Source shards of one destination parameter, per shard coordinate.
struct SourceShards {
  std::vector<ShardGeometry> geometry;
  std::vector<std::vector<Candidate>> candidates;
};

// Byte geometry of moving [len) elements along `dim` between two shards.
struct PieceGeometry {
  int dim = 0;
  uint64_t esize = 0;
  std::vector<int64_t> shape;  // global shape
};

int64_t Product(const std::vector<int64_t>& v, size_t from, size_t to) {
  int64_t n = 1;
  for (size_t i = from; i < to && i < v.size(); ++i) n *= v[i];
  return n;
}

Piece MakePiece(const PieceGeometry& g, const ShardGeometry& src,
                const ShardGeometry& dst, int64_t src_start, int64_t dst_start,
                int64_t len) {
  Piece piece;
  const size_t nd = std::max<size_t>(g.shape.size(), 1);
  if (g.dim == 0) {
    const uint64_t row = Product(g.shape, 1, nd) * g.esize;
    piece.src_offset = src_start * row;
    piece.dst_offset = dst_start * row;
    piece.run_bytes = len * row;
    piece.src_stride = piece.dst_stride = piece.run_bytes;
    return piece;
  }
  const uint64_t inner = Product(g.shape, 2, nd) * g.esize;
  piece.src_offset = src_start * inner;
  piece.dst_offset = dst_start * inner;
  piece.run_bytes = len * inner;
  piece.nruns = g.shape[0];
  piece.src_stride = src.local_shape[1] * inner;
  piece.dst_stride = dst.local_shape[1] * inner;
  if (piece.src_stride == piece.run_bytes &&
      piece.dst_stride == piece.run_bytes) {
    piece.run_bytes *= piece.nruns;
    piece.nruns = 1;
    piece.src_stride = piece.dst_stride = piece.run_bytes;
  }
  return piece;
}

class Planner {
 public:
  Planner(const ModelSpec& spec, const RefitTopology& topo)
      : spec_(spec), topo_(topo), send_load_(topo.world_size, 0) {
    by_data_.resize(spec.params.size());
    for (size_t i = 0; i < spec.params.size(); ++i) {
      by_data_[spec.params[i].data_id].push_back(static_cast<uint32_t>(i));
    }
  }

  Result<ReshardPlan> Build() {
    for (size_t p = 0; p < spec_.params.size(); ++p) {
      REFIT_RETURN_IF_ERROR(PlanParam(static_cast<uint32_t>(p)));
    }
    return Finish();
  }

 private:
  SourceShards SourcesOf(uint32_t p) const {
    const ParamSpec& spec = spec_.params[p];
    SourceShards s;
    const int n = ShardCoordCount(spec, topo_.src);
    for (int c = 0; c < n; ++c) {
      s.geometry.push_back(ShardOf(spec, topo_.src, c));
      std::vector<Candidate> cands;
      for (uint32_t q : by_data_[spec.data_id]) {
        for (int r : HolderRanks(spec_.params[q], q, topo_.src, c)) {
          cands.push_back({r + topo_.src_rank_offset, q});
        }
      }
      std::sort(cands.begin(), cands.end(),
                [](const Candidate& a, const Candidate& b) {
                  return a.rank < b.rank;
                });
      s.candidates.push_back(std::move(cands));
    }
    return s;
  }

  // Local replica first, then the least-loaded sender, ties to the lowest rank.
  Candidate Choose(const std::vector<Candidate>& cands, int dst_rank) const {
    const Candidate* best = nullptr;
    for (const Candidate& c : cands) {
      if (c.rank == dst_rank) return c;
      if (best == nullptr || send_load_[c.rank] < send_load_[best->rank]) {
        best = &c;
      }
    }
    return *best;
  }

  Status PlanParam(uint32_t p) {
    const ParamSpec& spec = spec_.params[p];
    // Destination holders in ascending global rank, with their coordinate.
    std::vector<std::pair<int, int>> dsts;
    const int n = ShardCoordCount(spec, topo_.dst);
    for (int c = 0; c < n; ++c) {
      for (int r : HolderRanks(spec, p, topo_.dst, c)) {
        dsts.emplace_back(r + topo_.dst_rank_offset, c);
      }
    }
    if (dsts.empty()) return OkStatus();
    std::sort(dsts.begin(), dsts.end());
    const SourceShards src = SourcesOf(p);
    std::vector<ShardGeometry> dst_geo;
    for (int c = 0; c < n; ++c) dst_geo.push_back(ShardOf(spec, topo_.dst, c));
    for (const auto& [rank, coord] : dsts) {
      REFIT_RETURN_IF_ERROR(PlanShard(p, src, dst_geo[coord], rank));
    }
    return OkStatus();
  }

  Status PlanShard(uint32_t p, const SourceShards& src,
                   const ShardGeometry& dst, int dst_rank) {
    const ParamSpec& spec = spec_.params[p];
    const PieceGeometry geo{dst.dim, DTypeSize(spec.dtype), spec.shape};
    std::vector<std::pair<int64_t, int64_t>> covered;
    for (const Segment& ds : dst.segments) {
      for (size_t c = 0; c < src.geometry.size(); ++c) {
        for (const Segment& ss : src.geometry[c].segments) {
          const int64_t lo = std::max(ds.global_start, ss.global_start);
          const int64_t hi = std::min(ds.global_start + ds.length,
                                      ss.global_start + ss.length);
          if (lo >= hi) continue;
          if (src.candidates[c].empty()) continue;  // reported as uncovered
          const Candidate from = Choose(src.candidates[c], dst_rank);
          Piece piece = MakePiece(
              geo, src.geometry[c], dst, ss.local_start + lo - ss.global_start,
              ds.local_start + lo - ds.global_start, hi - lo);
          piece.src_param = from.param;
          piece.dst_param = p;
          Add(from.rank, dst_rank, piece);
          covered.emplace_back(lo, hi);
        }
      }
    }
    ++dst_tensors_;
    return CheckCoverage(spec, dst, dst_rank, covered);
  }

  Status CheckCoverage(const ParamSpec& spec, const ShardGeometry& dst,
                       int dst_rank,
                       std::vector<std::pair<int64_t, int64_t>>& covered) {
    std::vector<std::pair<int64_t, int64_t>> want;
    for (const Segment& s : dst.segments) {
      want.emplace_back(s.global_start, s.global_start + s.length);
    }
    std::sort(covered.begin(), covered.end());
    std::sort(want.begin(), want.end());
    // Merge touching intervals; any overlap is a double write.
    std::vector<std::pair<int64_t, int64_t>> merged;
    for (const auto& iv : covered) {
      if (!merged.empty() && iv.first < merged.back().second) {
        return Internal("plan: destination rank " + std::to_string(dst_rank) +
                        " tensor " + spec.name + ": rows/cols " +
                        std::to_string(iv.first) + " written twice");
      }
      if (!merged.empty() && iv.first == merged.back().second) {
        merged.back().second = iv.second;
      } else {
        merged.push_back(iv);
      }
    }
    std::vector<std::pair<int64_t, int64_t>> want_merged;
    for (const auto& iv : want) {
      if (!want_merged.empty() && iv.first == want_merged.back().second) {
        want_merged.back().second = iv.second;
      } else {
        want_merged.push_back(iv);
      }
    }
    if (merged != want_merged) {
      return Internal("plan: destination rank " + std::to_string(dst_rank) +
                      " tensor " + spec.name +
                      ": not covered exactly once by the source shards");
    }
    return OkStatus();
  }

  void Add(int src_rank, int dst_rank, const Piece& piece) {
    const uint64_t key =
        static_cast<uint64_t>(src_rank) * topo_.world_size + dst_rank;
    auto [it, inserted] = op_index_.try_emplace(key, ops_.size());
    if (inserted) {
      ops_.push_back(TransferOp{src_rank, dst_rank, 0, 0, {}});
    }
    TransferOp& op = ops_[it->second];
    op.pieces.push_back(piece);
    op.bytes += piece.bytes();
    if (src_rank != dst_rank) send_load_[src_rank] += piece.bytes();
  }

  ReshardPlan Finish() {
    ReshardPlan plan;
    plan.world_size = topo_.world_size;
    std::sort(ops_.begin(), ops_.end(),
              [](const TransferOp& a, const TransferOp& b) {
                return std::pair(a.src_rank, a.dst_rank) <
                       std::pair(b.src_rank, b.dst_rank);
              });
    for (size_t i = 0; i < ops_.size(); ++i) {
      ops_[i].task_id = i;
      if (ops_[i].src_rank == ops_[i].dst_rank) {
        plan.bytes_local += ops_[i].bytes;
      } else {
        plan.bytes_remote += ops_[i].bytes;
        ++plan.messages;
      }
    }
    plan.dst_tensors = dst_tensors_;
    plan.ops = std::move(ops_);
    return plan;
  }

  const ModelSpec& spec_;
  const RefitTopology& topo_;
  std::vector<std::vector<uint32_t>> by_data_;
  std::vector<uint64_t> send_load_;
  std::vector<TransferOp> ops_;
  std::unordered_map<uint64_t, size_t> op_index_;
  uint64_t dst_tensors_ = 0;
};

}  // namespace

bool RefitTopology::collocated() const {
  return src_rank_offset == dst_rank_offset &&
         src.world_size() == dst.world_size();
}

Result<RefitTopology> MakeTopology(const Layout& src, const Layout& dst,
                                   int src_rank_offset, int dst_rank_offset,
                                   int world_size) {
  RefitTopology t{src, dst, src_rank_offset, dst_rank_offset, world_size};
  const int s0 = src_rank_offset, s1 = s0 + src.world_size();
  const int d0 = dst_rank_offset, d1 = d0 + dst.world_size();
  if (s0 < 0 || d0 < 0 || s1 > world_size || d1 > world_size) {
    return InvalidArgument(
        "topology: source ranks [" + std::to_string(s0) + ", " +
        std::to_string(s1) + ") and destination ranks [" + std::to_string(d0) +
        ", " + std::to_string(d1) + ") must lie in a world of " +
        std::to_string(world_size));
  }
  if (t.collocated()) return t;
  if (s0 < d1 && d0 < s1) {
    return InvalidArgument(
        "topology: non-collocated source ranks [" + std::to_string(s0) + ", " +
        std::to_string(s1) + ") overlap destination ranks [" +
        std::to_string(d0) + ", " + std::to_string(d1) + ")");
  }
  return t;
}

Result<ReshardPlan> BuildReshardPlan(const ModelSpec& spec,
                                     const RefitTopology& topo) {
  return Planner(spec, topo).Build();
}

RankPlan ExtractRankPlan(const ReshardPlan& plan, int rank) {
  RankPlan rp;
  rp.rank = rank;
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    const TransferOp& op = plan.ops[i];
    const auto idx = static_cast<uint32_t>(i);
    if (op.src_rank == rank && op.dst_rank == rank) {
      rp.local_copies.push_back(idx);
    } else if (op.src_rank == rank) {
      rp.sends.push_back(idx);
    } else if (op.dst_rank == rank) {
      rp.recvs.push_back(idx);
    }
  }
  return rp;
}

}  // namespace refit
