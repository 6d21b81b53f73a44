#include "refit/core/planner.h"

#include <algorithm>
#include <array>
#include <deque>
#include <iterator>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>

#include "refit/core/shard.h"

namespace refit {

namespace {

// A source replica able to send a piece: a global rank and the position of
// its parameter in the data group (DataGroups; 0 unless tied).
struct Candidate {
  int rank = 0;
  uint32_t slot = 0;
};

// Candidates per source shard coordinate, ascending by rank.
using CandidateLists = std::vector<std::vector<Candidate>>;

// Destination holders of a parameter: (global rank, shard coordinate),
// ascending.
using Holders = std::vector<std::pair<int, int>>;

// A half-open interval of rows / columns along the split dimension.
using Interval = std::pair<int64_t, int64_t>;

// A piece as planned: the op it joins, its parameters and its template.
struct PlannedPiece {
  uint32_t op = 0;
  uint32_t src_param = 0;
  uint32_t dst_param = 0;
  uint32_t piece = 0;  // index into the templates
};

// The template pieces shared by every parameter with the same geometry key
// (GeometryKey: the experts of a layer, the layers' like tensors): pieces
// per destination coordinate, each with the source coordinate whose
// replicas can send it and the rows it covers along the split dimension,
// and the rows each destination coordinate must get. Built once per class;
// each coordinate's coverage checked once per class.
struct TemplateClass {
  std::vector<size_t> begin;                // per destination coordinate, + end
  std::vector<uint32_t> src_coord;          // per template, from begin.front()
  std::vector<Interval> rows;               // per template, from begin.front()
  std::vector<std::vector<Interval>> want;  // per destination coordinate
  std::vector<bool> checked;                // per destination coordinate
};

// Hash of a geometry key (FNV-1a over its words).
struct KeyHash {
  size_t operator()(const std::vector<int64_t>& key) const {
    uint64_t h = 0xCBF29CE484222325ull;
    for (int64_t v : key) h = (h ^ static_cast<uint64_t>(v)) * 0x100000001B3ull;
    return h;
  }
};

int64_t Product(const std::vector<int64_t>& v, size_t from, size_t to) {
  int64_t n = 1;
  for (size_t i = from; i < to && i < v.size(); ++i) n *= v[i];
  return n;
}

// Byte geometry of moving `len` elements along the split dimension between a
// source and a destination shard of a parameter of global shape `shape`.
Piece MakePiece(const std::vector<int64_t>& shape, uint64_t esize,
                const ShardGeometry& src, const ShardGeometry& dst,
                int64_t src_start, int64_t dst_start, int64_t len) {
  Piece piece;
  const size_t nd = std::max<size_t>(shape.size(), 1);
  if (dst.dim == 0) {
    const uint64_t row = Product(shape, 1, nd) * esize;
    piece.src_offset = src_start * row;
    piece.dst_offset = dst_start * row;
    piece.run_bytes = len * row;
    piece.src_stride = piece.dst_stride = piece.run_bytes;
    return piece;
  }
  const uint64_t inner = Product(shape, 2, nd) * esize;
  piece.src_offset = src_start * inner;
  piece.dst_offset = dst_start * inner;
  piece.run_bytes = len * inner;
  piece.nruns = shape[0];
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

// Sorts `v` and merges touching intervals in place. Returns the start of the
// first interval overlapping the one before it, if any.
std::optional<int64_t> SortAndMerge(std::vector<Interval>& v) {
  std::sort(v.begin(), v.end());
  std::optional<int64_t> overlap;
  size_t n = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const Interval iv = v[i];
    if (n > 0 && iv.first < v[n - 1].second && !overlap) overlap = iv.first;
    if (n > 0 && iv.first == v[n - 1].second) {
      v[n - 1].second = iv.second;
    } else {
      v[n++] = iv;
    }
  }
  v.resize(n);
  return overlap;
}

// The parameters holding each data_id, ascending: group d is
// members[begin[d], begin[d + 1]).
class DataGroups {
 public:
  explicit DataGroups(const ModelSpec& spec) : begin_(spec.params.size() + 1) {
    for (const ParamSpec& p : spec.params) ++begin_[p.data_id + 1];
    for (size_t d = 1; d < begin_.size(); ++d) begin_[d] += begin_[d - 1];
    std::vector<uint32_t> next(begin_.begin(), begin_.end() - 1);
    members_.resize(spec.params.size());
    for (uint32_t i = 0; i < members_.size(); ++i) {
      members_[next[spec.params[i].data_id]++] = i;
    }
  }

  std::span<const uint32_t> operator[](uint32_t data_id) const {
    return {members_.data() + begin_[data_id],
            members_.data() + begin_[data_id + 1]};
  }

 private:
  std::vector<uint32_t> begin_;
  std::vector<uint32_t> members_;
};

// Op index of each (src, dst) pair: a dense table up to kDenseMax pairs, a
// hash map beyond.
class OpIndex {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  explicit OpIndex(int world) : world_(world) {
    const uint64_t pairs = static_cast<uint64_t>(world) * world;
    if (pairs <= kDenseMax) dense_.assign(pairs, kNone);
  }

  // The op index of the pair; kNone until set.
  uint32_t& operator()(int src_rank, int dst_rank) {
    const uint64_t key = static_cast<uint64_t>(src_rank) * world_ + dst_rank;
    if (!dense_.empty()) return dense_[key];
    return sparse_.try_emplace(key, kNone).first->second;
  }

 private:
  static constexpr uint64_t kDenseMax = uint64_t{1} << 20;
  uint64_t world_;
  std::vector<uint32_t> dense_;
  std::unordered_map<uint64_t, uint32_t> sparse_;
};

class Planner {
 public:
  // only_rank >= 0 keeps the ops that rank takes part in (every choice is
  // still made, so the kept ops equal those of the full plan).
  // With `replan` (one entry per parameter), only the parameters it marks
  // are planned, on top of the sender loads `loads`.
  Planner(const ModelSpec& spec, const RefitTopology& topo, int only_rank,
          const PlanOptions& options, const std::vector<uint8_t>* replan,
          const std::vector<uint64_t>* loads)
      : Planner(spec, topo, only_rank, options) {
    replan_ = replan;
    if (loads == nullptr) return;
    send_load_ = *loads;
    for (size_t r = 0; r < send_load_.size(); ++r) {
      send_step_[r] = send_load_[r] / quantum_;
    }
  }

  Planner(const ModelSpec& spec, const RefitTopology& topo, int only_rank,
          const PlanOptions& options)
      : spec_(spec),
        topo_(topo),
        only_rank_(only_rank),
        dst_block_(options.dst_block),
        gpus_per_node_(options.fanout_gpus_per_node),
        no_fanout_(options.no_fanout),
        skip_dst_(options.skip_dst),
        groups_(spec),
        send_load_(topo.world_size, 0),
        send_step_(topo.world_size, 0),
        quantum_(BalanceQuantum(spec, topo.world_size)),
        op_index_(topo.world_size),
        forward_index_(topo.world_size),
        lead_load_(topo.world_size, 0),
        src_cache_(HolderClassCount(topo.src)),
        dst_cache_(HolderClassCount(topo.dst)) {}

  Result<ReshardPlan> Build() {
    if (!dst_block_.empty() && dst_block_.size() != spec_.params.size()) {
      return InvalidArgument(
          "plan: dst_block has " + std::to_string(dst_block_.size()) +
          " entries for " + std::to_string(spec_.params.size()) +
          " parameters");
    }
    if (!no_fanout_.empty() && no_fanout_.size() != spec_.params.size()) {
      return InvalidArgument(
          "plan: no_fanout has " + std::to_string(no_fanout_.size()) +
          " entries for " + std::to_string(spec_.params.size()) +
          " parameters");
    }
    if (gpus_per_node_ < 0) {
      return InvalidArgument("plan: fanout_gpus_per_node is " +
                             std::to_string(gpus_per_node_) + ", must be >= 0");
    }
    if (gpus_per_node_ > 0 && !skip_dst_.empty()) {
      return InvalidArgument("plan: skip_dst does not go with fan-out");
    }
    for (size_t p = 0; p < spec_.params.size(); ++p) {
      if (replan_ != nullptr && (*replan_)[p] == 0) continue;
      REFIT_RETURN_IF_ERROR(PlanParam(static_cast<uint32_t>(p)));
    }
    return Finish();
  }

 private:
  // Source replicas of the parameters in `group` (one logical tensor), per
  // source coordinate of parameter `p`.
  CandidateLists BuildCandidates(const ParamSpec& p,
                                 std::span<const uint32_t> group) const {
    CandidateLists lists(ShardCoordCount(p, topo_.src));
    for (size_t c = 0; c < lists.size(); ++c) {
      std::vector<Candidate>& cands = lists[c];
      for (uint32_t slot = 0; slot < group.size(); ++slot) {
        const uint32_t q = group[slot];
        for (int r : HolderRanks(spec_.params[q], q, topo_.src, c)) {
          cands.push_back({r + topo_.src_rank_offset, slot});
        }
      }
      std::sort(cands.begin(), cands.end(),
                [](const Candidate& a, const Candidate& b) {
                  return a.rank < b.rank;
                });
    }
    return lists;
  }

  // Cached per source holder class; tied parameters are rebuilt each time.
  const CandidateLists& SourceCandidates(uint32_t p) {
    const ParamSpec& spec = spec_.params[p];
    const std::span<const uint32_t> group = groups_[spec.data_id];
    if (group.size() > 1) {
      tied_candidates_ = BuildCandidates(spec, group);
      return tied_candidates_;
    }
    std::optional<CandidateLists>& lists =
        src_cache_[HolderClass(spec, p, topo_.src)];
    if (!lists) lists = BuildCandidates(spec, group);
    return *lists;
  }

  // Cached per destination holder class.
  const Holders& DestinationHolders(uint32_t p) {
    const ParamSpec& spec = spec_.params[p];
    std::optional<Holders>& holders =
        dst_cache_[HolderClass(spec, p, topo_.dst)];
    if (holders) return *holders;
    holders.emplace();
    for (int c = 0; c < ShardCoordCount(spec, topo_.dst); ++c) {
      for (int r : HolderRanks(spec, p, topo_.dst, c)) {
        holders->emplace_back(r + topo_.dst_rank_offset, c);
      }
    }
    std::sort(holders->begin(), holders->end());
    return *holders;
  }

  // Local replica first, then the least-loaded sender, loads compared in
  // steps of quantum_ bytes, ties to the lowest rank. The steps let one
  // sender serve consecutive pieces (the experts of a layer lie one after
  // another in its memory) until it is a step ahead, instead of alternating
  // replicas piece by piece; sender loads still differ by at most one step
  // plus one piece.
  // With fan-out, candidates on the destination's node come before the
  // others.
  Candidate Choose(const std::vector<Candidate>& cands, int dst_rank) const {
    auto local = LowerBound(cands, dst_rank);
    if (local != cands.end() && local->rank == dst_rank) return *local;
    if (gpus_per_node_ > 0) {
      const auto [lo, hi] = OnNode(cands, dst_rank);
      if (lo != hi) return LeastLoaded(lo, hi);
    }
    return LeastLoaded(cands.begin(), cands.end());
  }

  using CandidateIt = std::vector<Candidate>::const_iterator;

  static CandidateIt LowerBound(const std::vector<Candidate>& cands, int rank) {
    return std::lower_bound(
        cands.begin(), cands.end(), rank,
        [](const Candidate& c, int r) { return c.rank < r; });
  }

  // The candidates on the node of `rank` (fan-out only).
  std::pair<CandidateIt, CandidateIt> OnNode(
      const std::vector<Candidate>& cands, int rank) const {
    const int first = rank / gpus_per_node_ * gpus_per_node_;
    return {LowerBound(cands, first),
            LowerBound(cands, first + gpus_per_node_)};
  }

  bool HasOnNode(const std::vector<Candidate>& cands, int rank) const {
    const auto [lo, hi] = OnNode(cands, rank);
    return lo != hi;
  }

  // The first candidate of the fewest balance steps sent.
  Candidate LeastLoaded(CandidateIt begin, CandidateIt end) const {
    CandidateIt best = begin;
    uint64_t best_step = send_step_[best->rank];
    for (CandidateIt c = begin; c != end; ++c) {
      const uint64_t step = send_step_[c->rank];
      if (step < best_step) best = c, best_step = step;
    }
    return *best;
  }

  // The balance step: 1/16 of an even share of the model's bytes per rank,
  // at most 8 MiB (so that Kimi-K2-sized plans balance to well under 1%),
  // at least 1 byte.
  static uint64_t BalanceQuantum(const ModelSpec& spec, int world) {
    uint64_t total = 0;
    for (const ParamSpec& p : spec.params) {
      total += static_cast<uint64_t>(p.NumElements()) * DTypeSize(p.dtype);
    }
    const uint64_t share = total / (16 * static_cast<uint64_t>(world));
    return std::clamp<uint64_t>(share, 1, uint64_t{8} << 20);
  }

  // Fills the source and destination shard geometry of `spec`.
  void FillGeometry(uint32_t p) {
    const ParamSpec& spec = spec_.params[p];
    src_geometry_.resize(ShardCoordCount(spec, topo_.src));
    for (int c = 0; c < static_cast<int>(src_geometry_.size()); ++c) {
      ShardOfInto(spec, topo_.src, c, &src_geometry_[c]);
    }
    dst_geometry_.resize(ShardCoordCount(spec, topo_.dst));
    for (int c = 0; c < static_cast<int>(dst_geometry_.size()); ++c) {
      ShardOfInto(spec, topo_.dst, c, &dst_geometry_[c]);
      if (!dst_block_.empty() && dst_block_[p] > 1) {
        dst_geometry_[c] =
            ExpandToBlocks(spec, dst_geometry_[c], dst_block_[p]);
      }
    }
  }

  // The words that decide the templates of `p`: everything ShardOfInto and
  // ExpandToBlocks read of a parameter (element size, shape, shard kind, TP
  // group, whether engine families hold it whole, destination block) and which
  // source coordinates have no holder. Keep it in step with them: the planner
  // digests (planner_digest_test.cc) pin the result.
  void GeometryKey(uint32_t p, const CandidateLists& sources) {
    const ParamSpec& spec = spec_.params[p];
    key_.clear();
    key_.push_back(static_cast<int64_t>(DTypeSize(spec.dtype)));
    key_.push_back(static_cast<int64_t>(spec.shard));
    key_.push_back(static_cast<int64_t>(spec.tp_group));
    key_.push_back(spec.engine_replicated);
    key_.push_back(dst_block_.empty() ? 0 : dst_block_[p]);
    key_.push_back(static_cast<int64_t>(spec.shape.size()));
    key_.insert(key_.end(), spec.shape.begin(), spec.shape.end());
    for (const std::vector<Candidate>& c : sources) key_.push_back(c.empty());
  }

  // The template class of `p`, built (and its geometry computed) on first
  // sight of its key.
  TemplateClass& ClassOf(uint32_t p, const CandidateLists& sources) {
    GeometryKey(p, sources);
    auto [it, fresh] = class_index_.try_emplace(key_, classes_.size());
    if (!fresh) return classes_[it->second];
    FillGeometry(p);
    TemplateClass& tc = classes_.emplace_back();
    tc.begin.assign(1, templates_.size());
    for (const ShardGeometry& dst : dst_geometry_) {
      std::vector<Interval>& want = tc.want.emplace_back();
      for (const Segment& ds : dst.segments) {
        want.emplace_back(ds.global_start, ds.global_start + ds.length);
        for (size_t c = 0; c < src_geometry_.size(); ++c) {
          if (sources[c].empty()) continue;  // reported as uncovered
          for (const Segment& ss : src_geometry_[c].segments) {
            AddTemplate(p, src_geometry_[c], ss, dst, ds, c, tc);
          }
        }
      }
      SortAndMerge(want);
      tc.begin.push_back(templates_.size());
    }
    tc.checked.assign(dst_geometry_.size(), false);
    return tc;
  }

  // Appends the piece where source segment `ss` (of source coordinate `c`)
  // overlaps destination segment `ds`, if they do.
  void AddTemplate(uint32_t p, const ShardGeometry& src, const Segment& ss,
                   const ShardGeometry& dst, const Segment& ds, size_t c,
                   TemplateClass& tc) {
    const int64_t lo = std::max(ds.global_start, ss.global_start);
    const int64_t hi =
        std::min(ds.global_start + ds.length, ss.global_start + ss.length);
    if (lo >= hi) return;
    const ParamSpec& spec = spec_.params[p];
    templates_.push_back(MakePiece(spec.shape, DTypeSize(spec.dtype), src, dst,
                                   ss.local_start + lo - ss.global_start,
                                   ds.local_start + lo - ds.global_start,
                                   hi - lo));
    tc.src_coord.push_back(static_cast<uint32_t>(c));
    tc.rows.emplace_back(lo, hi);
  }

  // Plans the pieces of every destination holder of `p`, in rank order.
  Status PlanParam(uint32_t p) {
    const Holders& holders = DestinationHolders(p);
    if (holders.empty()) return OkStatus();
    const CandidateLists& sources = SourceCandidates(p);
    TemplateClass& tc = ClassOf(p, sources);
    const size_t first = tc.begin.front();
    const std::span<const uint32_t> group = groups_[spec_.params[p].data_id];
    const bool fan =
        gpus_per_node_ > 0 && (no_fanout_.empty() || no_fanout_[p] == 0);
    if (fan) AssignLeaders(holders, sources, tc);
    for (size_t h = 0; h < holders.size(); ++h) {
      const auto [rank, coord] = holders[h];
      if (Skipped(rank, p)) continue;
      // Every holder of a coordinate gets the same pieces: check them once
      // per class.
      if (!tc.checked[coord]) {
        REFIT_RETURN_IF_ERROR(CheckCoverage(p, tc, coord, rank));
        tc.checked[coord] = true;
      }
      const int leader = fan ? leader_of_[h] : -1;
      for (size_t i = tc.begin[coord]; i < tc.begin[coord + 1]; ++i) {
        const std::vector<Candidate>& cands = sources[tc.src_coord[i - first]];
        if (leader >= 0 && !HasOnNode(cands, rank)) {
          AddForward(leader, rank, p, i);
          continue;
        }
        const Candidate from = Choose(cands, rank);
        Add(from.rank, rank, group[from.slot], p, i);
      }
      ++dst_tensors_;
    }
    return OkStatus();
  }

  // True when options.skip_dst leaves out `p` on destination rank `rank`.
  bool Skipped(int rank, uint32_t p) const {
    if (skip_dst_.empty()) return false;
    const uint64_t key = static_cast<uint64_t>(rank) * spec_.params.size() + p;
    return std::binary_search(skip_dst_.begin(), skip_dst_.end(), key);
  }

  // Bytes of the templates of destination coordinate `coord` that no source
  // replica on the node of `rank` holds.
  uint64_t OffNodeBytes(const CandidateLists& sources, const TemplateClass& tc,
                        int coord, int rank) const {
    const size_t first = tc.begin.front();
    uint64_t bytes = 0;
    for (size_t i = tc.begin[coord]; i < tc.begin[coord + 1]; ++i) {
      if (!HasOnNode(sources[tc.src_coord[i - first]], rank)) {
        bytes += templates_[i].bytes();
      }
    }
    return bytes;
  }

  // leader_of_[h]: the rank holder h gets its off-node bytes from, or -1
  // when it receives them itself. Holders of one coordinate on one node
  // share one leader when they need bytes from off the node: the one that
  // has led the fewest bytes so far, ties to the lowest rank.
  void AssignLeaders(const Holders& holders, const CandidateLists& sources,
                     const TemplateClass& tc) {
    leader_of_.assign(holders.size(), -1);
    by_node_.resize(holders.size());
    for (size_t h = 0; h < holders.size(); ++h) {
      by_node_[h] = {static_cast<uint32_t>(holders[h].first / gpus_per_node_),
                     static_cast<uint32_t>(holders[h].second),
                     static_cast<uint32_t>(h)};
    }
    std::sort(by_node_.begin(), by_node_.end());
    for (size_t a = 0, b = 0; a < by_node_.size(); a = b) {
      while (b < by_node_.size() && by_node_[b][0] == by_node_[a][0] &&
             by_node_[b][1] == by_node_[a][1]) {
        ++b;
      }
      if (b - a < 2) continue;
      const int rank = holders[by_node_[a][2]].first;
      const uint64_t off =
          OffNodeBytes(sources, tc, static_cast<int>(by_node_[a][1]), rank);
      if (off == 0) continue;
      int leader = -1;
      for (size_t k = a; k < b; ++k) {
        const int r = holders[by_node_[k][2]].first;
        if (leader < 0 || lead_load_[r] < lead_load_[leader]) leader = r;
      }
      lead_load_[leader] += off * (b - a - 1);
      for (size_t k = a; k < b; ++k) {
        const uint32_t h = by_node_[k][2];
        if (holders[h].first != leader) leader_of_[h] = leader;
      }
    }
  }

  // The pieces of destination coordinate `coord` of class `tc` (that of
  // `p`) must write every element of its shard exactly once.
  Status CheckCoverage(uint32_t p, const TemplateClass& tc, int coord,
                       int dst_rank) {
    const std::string& name = spec_.params[p].name;
    const size_t first = tc.begin.front();
    covered_.assign(tc.rows.begin() + (tc.begin[coord] - first),
                    tc.rows.begin() + (tc.begin[coord + 1] - first));
    if (const std::optional<int64_t> twice = SortAndMerge(covered_)) {
      return Internal("plan: destination rank " + std::to_string(dst_rank) +
                      " tensor " + name + ": rows/cols " +
                      std::to_string(*twice) + " written twice");
    }
    if (covered_ != tc.want[coord]) {
      return Internal("plan: destination rank " + std::to_string(dst_rank) +
                      " tensor " + name +
                      ": not covered exactly once by the source shards");
    }
    return OkStatus();
  }

  // Plans template `piece` of dst_param from src_param on src_rank to
  // dst_rank.
  void Add(int src_rank, int dst_rank, uint32_t src_param, uint32_t dst_param,
           size_t piece) {
    const uint64_t bytes = templates_[piece].bytes();
    if (src_rank != dst_rank) {
      send_load_[src_rank] += bytes;
      send_step_[src_rank] = send_load_[src_rank] / quantum_;
    }
    if (!Keeps(src_rank, dst_rank)) return;
    Append(op_index_, ops_, planned_, src_rank, dst_rank, src_param, dst_param,
           piece);
  }

  // Plans template `piece` of `p` forwarded from leader's destination shard
  // to dst_rank's.
  void AddForward(int leader, int dst_rank, uint32_t p, size_t piece) {
    forward_phase_ = true;
    if (!Keeps(leader, dst_rank)) return;
    Append(forward_index_, forwards_, planned_forwards_, leader, dst_rank, p, p,
           piece);
  }

  // Whether this build keeps ops between ranks a and b (only_rank_'s).
  bool Keeps(int a, int b) const {
    return only_rank_ < 0 || a == only_rank_ || b == only_rank_;
  }

  // Adds template `piece` to the op of (src_rank, dst_rank) in `ops`.
  void Append(OpIndex& index_of, std::vector<TransferOp>& ops,
              std::deque<PlannedPiece>& planned, int src_rank, int dst_rank,
              uint32_t src_param, uint32_t dst_param, size_t piece) {
    uint32_t& index = index_of(src_rank, dst_rank);
    if (index == OpIndex::kNone) {
      index = static_cast<uint32_t>(ops.size());
      ops.push_back(TransferOp{src_rank, dst_rank, 0, 0, {}});
    }
    ops[index].bytes += templates_[piece].bytes();
    planned.push_back(
        {index, src_param, dst_param, static_cast<uint32_t>(piece)});
  }

  // Fills every op's pieces, in planning order, allocating each list once.
  // Forwarded pieces read the leader's destination shard where the
  // receiver's lies.
  void StorePieces(const std::deque<PlannedPiece>& planned,
                   std::vector<TransferOp>& ops, bool forwards) const {
    std::vector<uint32_t> count(ops.size(), 0);
    for (const PlannedPiece& pp : planned) ++count[pp.op];
    for (size_t i = 0; i < ops.size(); ++i) ops[i].pieces.reserve(count[i]);
    for (const PlannedPiece& pp : planned) {
      Piece& piece = ops[pp.op].pieces.emplace_back(templates_[pp.piece]);
      piece.src_param = pp.src_param;
      piece.dst_param = pp.dst_param;
      if (forwards) {
        piece.src_offset = piece.dst_offset;
        piece.src_stride = piece.dst_stride;
      }
    }
  }

  // Sorts `ops` by (src, dst) and numbers their tasks from `first_task`.
  void Order(std::vector<TransferOp>& ops, uint64_t first_task) const {
    std::sort(ops.begin(), ops.end(),
              [](const TransferOp& a, const TransferOp& b) {
                return std::pair(a.src_rank, a.dst_rank) <
                       std::pair(b.src_rank, b.dst_rank);
              });
    for (TransferOp& op : ops) {
      op.task_id = first_task +
                   static_cast<uint64_t>(op.src_rank) * topo_.world_size +
                   op.dst_rank;
    }
  }

  ReshardPlan Finish() {
    StorePieces(planned_, ops_, false);
    StorePieces(planned_forwards_, forwards_, true);
    ReshardPlan plan;
    plan.world_size = topo_.world_size;
    const uint64_t world = topo_.world_size;
    Order(ops_, 0);
    Order(forwards_, world * world);
    for (const TransferOp& op : forwards_) plan.bytes_forwarded += op.bytes;
    plan.forwards = std::move(forwards_);
    plan.forward_phase = forward_phase_;
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (ops_[i].src_rank == ops_[i].dst_rank) {
        plan.bytes_local += ops_[i].bytes;
      } else {
        plan.bytes_remote += ops_[i].bytes;
        ++plan.messages;
      }
    }
    plan.dst_tensors = dst_tensors_;
    plan.ops = std::move(ops_);
    plan.send_load = send_load_;
    return plan;
  }

  const ModelSpec& spec_;
  const RefitTopology& topo_;
  const int only_rank_;
  const std::vector<int64_t>& dst_block_;
  const int gpus_per_node_;  // fan-out: 0 off
  const std::vector<uint8_t>& no_fanout_;
  const std::vector<uint64_t>& skip_dst_;
  const std::vector<uint8_t>* replan_ = nullptr;  // RebuildReshardPlan's
  const DataGroups groups_;
  std::vector<uint64_t> send_load_;  // bytes each rank sends so far
  std::vector<uint64_t> send_step_;  // send_load_ / quantum_
  const uint64_t quantum_;           // bytes per balance step (BalanceQuantum)
  std::vector<TransferOp> ops_;
  OpIndex op_index_;
  // Fan-out: the forwards, their index, and bytes each rank has led.
  std::vector<TransferOp> forwards_;
  OpIndex forward_index_;
  std::vector<uint64_t> lead_load_;
  bool forward_phase_ = false;  // some rank forwards
  uint64_t dst_tensors_ = 0;
  // Caches by holder class.
  std::vector<std::optional<CandidateLists>> src_cache_;
  std::vector<std::optional<Holders>> dst_cache_;
  // The template pieces of every class, and every piece planned from them
  // (a deque: millions of pieces in small blocks, reused by the next build
  // instead of one array that is mapped, first-touched and copied as it
  // grows).
  std::vector<Piece> templates_;
  std::vector<TemplateClass> classes_;
  std::unordered_map<std::vector<int64_t>, uint32_t, KeyHash> class_index_;
  std::vector<int64_t> key_;  // GeometryKey's scratch
  std::deque<PlannedPiece> planned_;
  std::deque<PlannedPiece> planned_forwards_;
  // Per-parameter scratch, reused to avoid allocations.
  CandidateLists tied_candidates_;
  std::vector<ShardGeometry> src_geometry_;
  std::vector<ShardGeometry> dst_geometry_;
  std::vector<Interval> covered_;
  std::vector<int> leader_of_;                    // AssignLeaders
  std::vector<std::array<uint32_t, 3>> by_node_;  // (node, coord, holder)
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
                                     const RefitTopology& topo,
                                     const PlanOptions& options) {
  return Planner(spec, topo, -1, options).Build();
}

Result<ReshardPlan> BuildRankReshardPlan(const ModelSpec& spec,
                                         const RefitTopology& topo, int rank,
                                         const PlanOptions& options) {
  return Planner(spec, topo, rank, options).Build();
}

namespace {

// kInvalidArgument unless the topologies differ at most in the destination's
// expert placement.
Status SameButPlacement(const RefitTopology& a, const RefitTopology& b) {
  ParallelConfig da = a.dst.config(), db = b.dst.config();
  da.expert_placement.clear();
  db.expert_placement.clear();
  const auto text = [](const RefitTopology& t, const ParallelConfig& d) {
    return t.src.config().ToString() + "@" +
           std::to_string(t.src.world_size()) + "+" +
           std::to_string(t.src_rank_offset) + " -> " + d.ToString() + "@" +
           std::to_string(t.dst.world_size()) + "+" +
           std::to_string(t.dst_rank_offset) + " in " +
           std::to_string(t.world_size);
  };
  if (text(a, da) == text(b, db)) return OkStatus();
  return InvalidArgument("plan rebuild: " + text(a, da) + " and " +
                         text(b, db) +
                         " differ in more than the destination's expert "
                         "placement");
}

// 1 for each routed expert whose destination EP ranks differ.
std::vector<uint8_t> MovedExperts(const ModelSpec& spec, const RefitTopology& a,
                                  const RefitTopology& b) {
  std::vector<uint8_t> moved(spec.params.size(), 0);
  for (size_t p = 0; p < spec.params.size(); ++p) {
    const int e = spec.params[p].expert;
    moved[p] = e >= 0 && a.dst.ExpertEpRanks(e) != b.dst.ExpertEpRanks(e);
  }
  return moved;
}

// Destination (rank, tensor) shards of the marked parameters in `t`.
uint64_t HeldShards(const ModelSpec& spec, const RefitTopology& t,
                    const std::vector<uint8_t>& marked) {
  uint64_t n = 0;
  for (size_t p = 0; p < spec.params.size(); ++p) {
    if (marked[p] == 0) continue;
    const ParamSpec& ps = spec.params[p];
    for (int c = 0; c < ShardCoordCount(ps, t.dst); ++c) {
      n += HolderRanks(ps, p, t.dst, c).size();
    }
  }
  return n;
}

// The pieces of `previous` outside `moved` with the ops of `fresh`, per
// (src, dst) pair in parameter order.
std::vector<TransferOp> MergeOps(const std::vector<TransferOp>& previous,
                                 std::vector<TransferOp>& fresh,
                                 const std::vector<uint8_t>& moved) {
  std::map<std::pair<int, int>, TransferOp> by_pair;
  for (const TransferOp& op : previous) {
    TransferOp kept{op.src_rank, op.dst_rank, 0, 0, {}};
    for (const Piece& pc : op.pieces) {
      if (moved[pc.dst_param] != 0) continue;
      kept.pieces.push_back(pc);
      kept.bytes += pc.bytes();
    }
    if (!kept.pieces.empty()) by_pair[{op.src_rank, op.dst_rank}] = kept;
  }
  for (TransferOp& op : fresh) {
    auto [it, created] = by_pair.try_emplace({op.src_rank, op.dst_rank}, op);
    if (created) continue;
    TransferOp& into = it->second;
    std::vector<Piece> merged;
    merged.reserve(into.pieces.size() + op.pieces.size());
    std::merge(into.pieces.begin(), into.pieces.end(), op.pieces.begin(),
               op.pieces.end(), std::back_inserter(merged),
               [](const Piece& a, const Piece& b) {
                 return a.dst_param < b.dst_param;
               });
    into.pieces = std::move(merged);
    into.bytes += op.bytes;
  }
  std::vector<TransferOp> out;
  out.reserve(by_pair.size());
  for (auto& [pair, op] : by_pair) out.push_back(std::move(op));
  return out;
}

}  // namespace

Result<ReshardPlan> RebuildReshardPlan(const ModelSpec& spec,
                                       const RefitTopology& topo, int rank,
                                       const RefitTopology& previous_topo,
                                       const ReshardPlan& previous,
                                       const PlanOptions& options,
                                       RebuildStats* stats) {
  REFIT_RETURN_IF_ERROR(SameButPlacement(topo, previous_topo));
  if (options.fanout_gpus_per_node != 0 || !options.skip_dst.empty() ||
      !previous.forwards.empty()) {
    return InvalidArgument("plan rebuild: not with fan-out or skip_dst");
  }
  if (previous.send_load.size() != static_cast<size_t>(topo.world_size)) {
    return InvalidArgument(
        "plan rebuild: the previous plan has no send loads "
        "of a world of " +
        std::to_string(topo.world_size));
  }
  const std::vector<uint8_t> moved = MovedExperts(spec, topo, previous_topo);
  REFIT_ASSIGN_OR_RETURN(
      ReshardPlan fresh,
      Planner(spec, topo, rank, options, &moved, &previous.send_load).Build());
  ReshardPlan plan;
  plan.world_size = topo.world_size;
  plan.ops = MergeOps(previous.ops, fresh.ops, moved);
  for (TransferOp& op : plan.ops) {
    op.task_id =
        static_cast<uint64_t>(op.src_rank) * topo.world_size + op.dst_rank;
    if (op.src_rank == op.dst_rank) {
      plan.bytes_local += op.bytes;
    } else {
      plan.bytes_remote += op.bytes;
      ++plan.messages;
    }
  }
  plan.dst_tensors = previous.dst_tensors -
                     HeldShards(spec, previous_topo, moved) + fresh.dst_tensors;
  plan.send_load = std::move(fresh.send_load);
  if (stats != nullptr) {
    stats->params_replanned = std::count(moved.begin(), moved.end(), 1);
    stats->params_kept = spec.params.size() - stats->params_replanned;
  }
  return plan;
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
  for (size_t i = 0; i < plan.forwards.size(); ++i) {
    const TransferOp& op = plan.forwards[i];
    const auto idx = static_cast<uint32_t>(i);
    if (op.src_rank == rank) rp.forward_sends.push_back(idx);
    if (op.dst_rank == rank) rp.forward_recvs.push_back(idx);
  }
  return rp;
}

}  // namespace refit
