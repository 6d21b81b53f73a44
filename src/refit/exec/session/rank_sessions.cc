#include "refit/exec/session/rank_sessions.h"

#include <chrono>

#include "refit/exec/session/session_inputs.h"

namespace refit::exec {

RankSessions::RankSessions(
    std::vector<std::shared_ptr<const SessionPlan>> plans,
    std::vector<std::string> keys, int rank)
    : keys_(std::move(keys)), rank_(rank) {
  for (size_t d = 0; d < plans.size(); ++d) {
    sessions_.push_back(std::make_unique<RankSession>(plans[d], rank));
  }
}

Status RankSessions::Bind(const ShardedModel* src,
                          std::span<const DestinationModel> dsts,
                          const TransportCapabilities& transport) {
  std::vector<const ShardedModel*> bound(sessions_.size(), nullptr);
  for (const DestinationModel& d : dsts) {
    const std::string key = DestinationKey(*d.model, d.rank_offset);
    size_t i = 0;
    while (i < keys_.size() && keys_[i] != key) ++i;
    if (i == keys_.size()) {
      return InvalidArgument("rank " + std::to_string(rank_) +
                             ": destination model " + key +
                             " is no destination of this refit");
    }
    bound[i] = d.model;
  }
  for (size_t i = 0; i < sessions_.size(); ++i) {
    REFIT_RETURN_IF_ERROR(sessions_[i]->Bind(src, bound[i], transport));
  }
  return OkStatus();
}

namespace {

// The runs of a shard's segments (the bytes a refit writes: not its
// vocabulary padding rows), `esize` bytes an element, at `base`.
void SegmentRuns(const ShardGeometry& g, uint64_t esize, std::byte* base,
                 std::vector<MutBlock>& out) {
  uint64_t outer = 1, inner = esize;
  for (size_t i = 0; i < g.local_shape.size(); ++i) {
    if (static_cast<int>(i) < g.dim) outer *= g.local_shape[i];
    if (static_cast<int>(i) > g.dim) inner *= g.local_shape[i];
  }
  const uint64_t stride =
      g.local_shape.empty() ? inner : g.local_shape[g.dim] * inner;
  for (const Segment& s : g.segments) {
    out.push_back(
        {base + s.local_start * inner, s.length * inner, outer, stride});
  }
}

}  // namespace

Status RankSessions::CopyShared(CopyService& service) {
  std::vector<ConstBlock> from;
  std::vector<MutBlock> to;
  for (const auto& session : sessions_) {
    for (const CopiedShard& c : session->plan().copied) {
      if (c.rank != rank_) continue;
      const RankSession& source = *sessions_[c.from];
      const std::span<std::byte> a = source.DstData(c.param);
      const std::span<std::byte> b = session->DstData(c.param);
      // Empty, or one tensor bound in both (a draft sharing the target's
      // embedding, as vLLM's and SGLang's drafts do): nothing to copy.
      if (a.empty() || b.empty() || a.data() == b.data()) continue;
      const ShardGeometry& g = session->DstGeometry(c.param);
      const uint64_t esize =
          DTypeSize(session->plan().dst_spec.params[c.param].dtype);
      std::vector<MutBlock> runs;
      SegmentRuns(g, esize, a.data(), runs);
      for (const MutBlock& m : runs) {
        from.push_back({m.base, m.run_bytes, m.nruns, m.stride});
      }
      SegmentRuns(g, esize, b.data(), to);
      const std::span<std::byte> sa = source.DstScales(c.param);
      const std::span<std::byte> sb = session->DstScales(c.param);
      if (sa.empty() || sa.size() != sb.size()) continue;
      from.push_back({sa.data(), sa.size(), 1, sa.size()});
      to.push_back({sb.data(), sb.size(), 1, sb.size()});
    }
  }
  bytes_copied_ = TotalBytes(to);
  if (to.empty()) return OkStatus();
  if (service.capabilities().CanRead(MemoryKind::kCuda)) {
    return service.CopyLocal(from, to);
  }
  GatherScatter(from, to);
  return OkStatus();
}

Status RankSessions::Execute(CopyService& service, uintptr_t cuda_stream,
                             SwapReport& report) {
  std::vector<RankWork> works;
  bool cuda = false;
  for (const auto& s : sessions_) {
    const SwapReport& n = s->counts();
    report.bytes_sent += n.bytes_sent;
    report.bytes_received += n.bytes_received;
    report.bytes_local += n.bytes_local;
    report.messages_sent += n.messages_sent;
    report.messages_received += n.messages_received;
    cuda = cuda || s->binds_cuda();
    works.push_back(s->Work());
  }
  if (cuda) {
    REFIT_RETURN_IF_ERROR(service.OrderAfter(cuda_stream));
    for (const auto& s : sessions_) {
      REFIT_RETURN_IF_ERROR(s->OrderAfter(cuda_stream));
    }
  }
  ExecuteTimes times;
  Status st = ExecuteRankPlans(works, service, &times);
  report.pack_ms = times.pack_ms;
  report.wire_ms = times.wire_ms;
  for (const auto& s : sessions_) report.staging_bytes += s->staging_bytes();
  if (st.ok()) {
    const auto start = std::chrono::steady_clock::now();
    st = CopyShared(service);
    times.unpack_ms += std::chrono::duration<double, std::milli>(
                           std::chrono::steady_clock::now() - start)
                           .count();
    report.bytes_copied = bytes_copied_;
  }
  report.unpack_ms = times.unpack_ms;
  return st;
}

uint64_t RankSessions::params_replanned() const {
  uint64_t n = 0;
  for (const auto& s : sessions_) n += s->plan().params_replanned;
  return n;
}

std::string RankSessions::DescribeMessage(int src, int dst,
                                          uint64_t task) const {
  for (const auto& s : sessions_) {
    std::string text = s->DescribeMessage(src, dst, task);
    if (!text.empty()) return text;
  }
  return {};
}

}  // namespace refit::exec
