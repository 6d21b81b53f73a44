#include "refit/exec/executor.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "refit/exec/stream_copy.h"

namespace refit::exec {

namespace {

Status Missing(int rank, const char* side, uint32_t param) {
  return Internal("executor: rank " + std::to_string(rank) + " holds no " +
                  side + " shard of parameter #" + std::to_string(param));
}

bool Transforms(const ReshardTransform* t, const Piece& p) {
  return t != nullptr && t->ShouldTransform(p.dst_param);
}

Result<std::vector<ConstBlock>> SendBlocks(const TransferOp& op,
                                           const RankBuffers& b,
                                           ReshardTransform* t) {
  std::vector<ConstBlock> blocks;
  blocks.reserve(op.pieces.size());
  for (const Piece& p : op.pieces) {
    const std::byte* base = b.src[p.src_param];
    if (base == nullptr) return Missing(op.src_rank, "source", p.src_param);
    if (Transforms(t, p)) {
      REFIT_ASSIGN_OR_RETURN(auto more, t->PrepareSend(op, p, base));
      blocks.insert(blocks.end(), more.begin(), more.end());
      continue;
    }
    blocks.push_back({base + p.src_offset, p.run_bytes, p.nruns, p.src_stride});
  }
  return blocks;
}

// The receive blocks of `op`; `ends[i]` is the end of piece i's blocks.
Result<std::vector<MutBlock>> RecvBlocks(const TransferOp& op,
                                         const RankBuffers& b,
                                         ReshardTransform* t,
                                         std::vector<size_t>& ends) {
  std::vector<MutBlock> blocks;
  blocks.reserve(op.pieces.size());
  ends.clear();
  for (const Piece& p : op.pieces) {
    if (Transforms(t, p)) {
      REFIT_ASSIGN_OR_RETURN(auto more, t->PrepareRecv(op, p));
      blocks.insert(blocks.end(), more.begin(), more.end());
      ends.push_back(blocks.size());
      continue;
    }
    std::byte* base = b.dst[p.dst_param];
    if (base == nullptr)
      return Missing(op.dst_rank, "destination", p.dst_param);
    blocks.push_back({base + p.dst_offset, p.run_bytes, p.nruns, p.dst_stride});
    ends.push_back(blocks.size());
  }
  return blocks;
}

// FinalizeRecv of every transformed piece of `op`, whose bytes arrived.
Status Finalize(const TransferOp& op, std::span<const MutBlock> blocks,
                std::span<const size_t> ends, ReshardTransform* t) {
  size_t begin = 0;
  for (size_t i = 0; i < op.pieces.size(); ++i) {
    const Piece& p = op.pieces[i];
    if (Transforms(t, p)) {
      REFIT_RETURN_IF_ERROR(
          t->FinalizeRecv(op, p, blocks.subspan(begin, ends[i] - begin)));
    }
    begin = ends[i];
  }
  return OkStatus();
}

void CopyRuns(const Piece& p, const std::byte* from, std::byte* to) {
  std::byte* d = to + p.dst_offset;
  const std::byte* s = from + p.src_offset;
  if (p.bytes() >= kStreamCopyMinBytes) {
    StreamCopyRuns(d, p.dst_stride, s, p.src_stride, p.run_bytes, p.nruns);
    return;
  }
  for (uint64_t i = 0; i < p.nruns; ++i) {
    std::memcpy(d + i * p.dst_stride, s + i * p.src_stride, p.run_bytes);
  }
}

// A transformed local piece: through the transform, as if sent to itself.
// The blocks carrying transformed local piece `p` of `op` out of the
// transform (`out`, from source shard `from`) and into it (`in`).
Status PrepareLocal(const TransferOp& op, const Piece& p, const std::byte* from,
                    ReshardTransform& t, std::vector<ConstBlock>& out,
                    std::vector<MutBlock>& in) {
  REFIT_ASSIGN_OR_RETURN(auto send, t.PrepareSend(op, p, from));
  REFIT_ASSIGN_OR_RETURN(auto recv, t.PrepareRecv(op, p));
  if (TotalBytes(send) != TotalBytes(recv)) {
    return Internal("executor: transform of parameter #" +
                    std::to_string(p.dst_param) +
                    " sends and receives different byte counts");
  }
  out.insert(out.end(), send.begin(), send.end());
  in.insert(in.end(), recv.begin(), recv.end());
  return OkStatus();
}

// The local pieces of `op`: the others by the CPU's streaming copies, or by
// `service` (a transport that may move device memory) when given;
// transformed ones through the transform (prepared, flushed, moved like the
// others, then finalised).
Status CopyLocal(const TransferOp& op, const RankBuffers& b,
                 ReshardTransform* t, CopyService* service) {
  std::vector<ConstBlock> from;
  std::vector<MutBlock> to;
  std::vector<std::pair<const Piece*, size_t>> finals;  // piece, first block
  for (const Piece& p : op.pieces) {
    const std::byte* src = b.src[p.src_param];
    if (src == nullptr) return Missing(op.src_rank, "source", p.src_param);
    if (Transforms(t, p)) {
      finals.emplace_back(&p, to.size());
      REFIT_RETURN_IF_ERROR(PrepareLocal(op, p, src, *t, from, to));
      continue;
    }
    std::byte* dst = b.dst[p.dst_param];
    if (dst == nullptr) return Missing(op.dst_rank, "destination", p.dst_param);
    if (service == nullptr) {
      CopyRuns(p, src, dst);
      continue;
    }
    from.push_back({src + p.src_offset, p.run_bytes, p.nruns, p.src_stride});
    to.push_back({dst + p.dst_offset, p.run_bytes, p.nruns, p.dst_stride});
  }
  if (!finals.empty()) REFIT_RETURN_IF_ERROR(t->Flush());
  if (service == nullptr) {
    StreamCopyFence();
    GatherScatter(from, to);  // the transformed pieces' blocks
  } else if (!from.empty()) {
    REFIT_RETURN_IF_ERROR(service->CopyLocal(from, to));
  }
  for (size_t i = 0; i < finals.size(); ++i) {
    const size_t end = i + 1 < finals.size() ? finals[i + 1].second : to.size();
    const std::span<const MutBlock> in(to.data() + finals[i].second,
                                       end - finals[i].second);
    REFIT_RETURN_IF_ERROR(t->FinalizeRecv(op, *finals[i].first, in));
  }
  return OkStatus();
}

// The blocks of forward `op` in this rank's destination tensors: read by
// its sender (the leader), written by its receiver. Both hold the shard
// alike, so each side uses its own dst offsets.
Result<std::vector<MutBlock>> ForwardBlocks(const TransferOp& op, int rank,
                                            const RankBuffers& b,
                                            ReshardTransform* t) {
  std::vector<MutBlock> blocks;
  blocks.reserve(op.pieces.size());
  for (const Piece& p : op.pieces) {
    if (Transforms(t, p)) {
      REFIT_ASSIGN_OR_RETURN(auto more, t->ForwardBlocks(p));
      blocks.insert(blocks.end(), more.begin(), more.end());
      continue;
    }
    std::byte* base = b.dst[p.dst_param];
    if (base == nullptr) return Missing(rank, "destination", p.dst_param);
    blocks.push_back({base + p.dst_offset, p.run_bytes, p.nruns, p.dst_stride});
  }
  return blocks;
}

// The forwards of `w` (the second phase of a fan-out plan), submitted.
Status SubmitForwards(const RankWork& w, CopyService& service) {
  const int rank = w.rank_plan->rank;
  for (uint32_t i : w.rank_plan->forward_sends) {
    const TransferOp& op = w.plan->forwards[i];
    REFIT_ASSIGN_OR_RETURN(auto blocks,
                           ForwardBlocks(op, rank, *w.buffers, w.transform));
    std::vector<ConstBlock> out;
    out.reserve(blocks.size());
    for (const MutBlock& m : blocks) {
      out.push_back({m.base, m.run_bytes, m.nruns, m.stride});
    }
    REFIT_RETURN_IF_ERROR(
        service.SubmitSend(op.dst_rank, op.task_id, std::move(out)));
  }
  for (uint32_t i : w.rank_plan->forward_recvs) {
    const TransferOp& op = w.plan->forwards[i];
    REFIT_ASSIGN_OR_RETURN(auto blocks,
                           ForwardBlocks(op, rank, *w.buffers, w.transform));
    REFIT_RETURN_IF_ERROR(
        service.SubmitRecv(op.src_rank, op.task_id, std::move(blocks)));
  }
  return OkStatus();
}

// The second phase: every rank runs it when any plan forwards, also one
// with no forward of its own (a copy service's Run may be collective).
Status RunForwards(std::span<const RankWork> works, CopyService& service) {
  for (const RankWork& w : works) {
    REFIT_RETURN_IF_ERROR(SubmitForwards(w, service));
  }
  return service.Run();
}

// The receive blocks of one work's receives, kept for Finalize when it
// transforms.
struct PostedRecvs {
  std::vector<std::vector<MutBlock>> blocks;
  std::vector<std::vector<size_t>> ends;
};

// Submits the sends and receives of `w`. An op this rank cannot pack or
// place still goes to the service, empty, so that its peer fails at once on
// the size (instead of waiting for the timeout); `*failed` then keeps this
// rank's own first error.
Status SubmitOps(const RankWork& w, CopyService& service, PostedRecvs& posted,
                 Status* failed) {
  for (uint32_t i : w.rank_plan->sends) {
    const TransferOp& op = w.plan->ops[i];
    Result<std::vector<ConstBlock>> blocks =
        SendBlocks(op, *w.buffers, w.transform);
    if (!blocks.ok() && failed->ok()) *failed = blocks.status();
    REFIT_RETURN_IF_ERROR(service.SubmitSend(
        op.dst_rank, op.task_id,
        blocks.ok() ? std::move(blocks).value() : std::vector<ConstBlock>{}));
  }
  const std::vector<uint32_t>& recvs = w.rank_plan->recvs;
  posted.ends.resize(recvs.size());
  for (size_t k = 0; k < recvs.size(); ++k) {
    const TransferOp& op = w.plan->ops[recvs[k]];
    Result<std::vector<MutBlock>> blocks =
        RecvBlocks(op, *w.buffers, w.transform, posted.ends[k]);
    if (!blocks.ok() && failed->ok()) *failed = blocks.status();
    if (!blocks.ok()) blocks = std::vector<MutBlock>{};
    if (w.transform != nullptr) posted.blocks.push_back(*blocks);
    REFIT_RETURN_IF_ERROR(
        service.SubmitRecv(op.src_rank, op.task_id, std::move(blocks).value()));
  }
  return OkStatus();
}

// After the Run: the receive-side conversions, the local copies and the
// transform's Finish of `w`.
Status CompleteOps(const RankWork& w, const PostedRecvs& posted,
                   CopyService& service) {
  for (size_t k = 0; k < posted.blocks.size(); ++k) {
    REFIT_RETURN_IF_ERROR(Finalize(w.plan->ops[w.rank_plan->recvs[k]],
                                   posted.blocks[k], posted.ends[k],
                                   w.transform));
  }
  // A transport that reads device memory also makes the local copies;
  // host-only transports leave them to the CPU's streaming copies.
  CopyService* by_service =
      service.capabilities().CanRead(MemoryKind::kCuda) ? &service : nullptr;
  for (uint32_t i : w.rank_plan->local_copies) {
    REFIT_RETURN_IF_ERROR(
        CopyLocal(w.plan->ops[i], *w.buffers, w.transform, by_service));
  }
  return w.transform != nullptr ? w.transform->Finish() : OkStatus();
}

// Milliseconds since `*since`, which then becomes now.
double Lap(std::chrono::steady_clock::time_point* since) {
  const auto now = std::chrono::steady_clock::now();
  const double ms =
      std::chrono::duration<double, std::milli>(now - *since).count();
  *since = now;
  return ms;
}

}  // namespace

Status ExecuteRankPlan(const ReshardPlan& plan, const RankPlan& rank_plan,
                       const RankBuffers& buffers, CopyService& service,
                       ReshardTransform* transform, ExecuteTimes* times) {
  const RankWork work{&plan, &rank_plan, &buffers, transform};
  return ExecuteRankPlans({&work, 1}, service, times);
}

Status ExecuteRankPlans(std::span<const RankWork> works, CopyService& service,
                        ExecuteTimes* times) {
  ExecuteTimes unused;
  if (times == nullptr) times = &unused;
  auto lap = std::chrono::steady_clock::now();
  Status failed;
  std::vector<PostedRecvs> posted(works.size());
  for (size_t w = 0; w < works.size(); ++w) {
    REFIT_RETURN_IF_ERROR(SubmitOps(works[w], service, posted[w], &failed));
  }
  for (const RankWork& w : works) {
    if (w.transform == nullptr) continue;
    const Status st = w.transform->Flush();
    if (!st.ok() && failed.ok()) failed = st;
  }
  times->pack_ms = Lap(&lap);
  // Run first: it posts this rank's sends so peers can start receiving.
  const Status run = service.Run();
  REFIT_RETURN_IF_ERROR(failed);
  REFIT_RETURN_IF_ERROR(run);
  times->wire_ms = Lap(&lap);
  for (size_t w = 0; w < works.size(); ++w) {
    REFIT_RETURN_IF_ERROR(CompleteOps(works[w], posted[w], service));
  }
  times->unpack_ms = Lap(&lap);
  const bool forward_phase =
      std::any_of(works.begin(), works.end(),
                  [](const RankWork& w) { return w.plan->forward_phase; });
  if (!forward_phase) return OkStatus();
  const Status st = RunForwards(works, service);
  times->wire_ms += Lap(&lap);
  return st;
}

}  // namespace refit::exec
