#include "refit/exec/executor.h"

#include <cstring>
#include <string>

#include "refit/exec/stream_copy.h"

namespace refit::exec {

namespace {

Status Missing(int rank, const char* side, uint32_t param) {
  return Internal("executor: rank " + std::to_string(rank) + " holds no " +
                  side + " shard of parameter #" + std::to_string(param));
}

Result<std::vector<ConstBlock>> SendBlocks(const TransferOp& op,
                                           const RankBuffers& b) {
  std::vector<ConstBlock> blocks;
  blocks.reserve(op.pieces.size());
  for (const Piece& p : op.pieces) {
    const std::byte* base = b.src[p.src_param];
    if (base == nullptr) return Missing(op.src_rank, "source", p.src_param);
    blocks.push_back({base + p.src_offset, p.run_bytes, p.nruns, p.src_stride});
  }
  return blocks;
}

Result<std::vector<MutBlock>> RecvBlocks(const TransferOp& op,
                                         const RankBuffers& b) {
  std::vector<MutBlock> blocks;
  blocks.reserve(op.pieces.size());
  for (const Piece& p : op.pieces) {
    std::byte* base = b.dst[p.dst_param];
    if (base == nullptr)
      return Missing(op.dst_rank, "destination", p.dst_param);
    blocks.push_back({base + p.dst_offset, p.run_bytes, p.nruns, p.dst_stride});
  }
  return blocks;
}

Status CopyLocal(const TransferOp& op, const RankBuffers& b) {
  for (const Piece& p : op.pieces) {
    const std::byte* from = b.src[p.src_param];
    std::byte* to = b.dst[p.dst_param];
    if (from == nullptr) return Missing(op.src_rank, "source", p.src_param);
    if (to == nullptr) return Missing(op.dst_rank, "destination", p.dst_param);
    std::byte* d = to + p.dst_offset;
    const std::byte* s = from + p.src_offset;
    if (p.bytes() >= kStreamCopyMinBytes) {
      StreamCopyRuns(d, p.dst_stride, s, p.src_stride, p.run_bytes, p.nruns);
      continue;
    }
    for (uint64_t i = 0; i < p.nruns; ++i) {
      std::memcpy(d + i * p.dst_stride, s + i * p.src_stride, p.run_bytes);
    }
  }
  StreamCopyFence();
  return OkStatus();
}

}  // namespace

Status ExecuteRankPlan(const ReshardPlan& plan, const RankPlan& rank_plan,
                       const RankBuffers& buffers, CopyService& service) {
  for (uint32_t i : rank_plan.sends) {
    const TransferOp& op = plan.ops[i];
    REFIT_ASSIGN_OR_RETURN(auto blocks, SendBlocks(op, buffers));
    REFIT_RETURN_IF_ERROR(
        service.SubmitSend(op.dst_rank, op.task_id, std::move(blocks)));
  }
  for (uint32_t i : rank_plan.recvs) {
    const TransferOp& op = plan.ops[i];
    REFIT_ASSIGN_OR_RETURN(auto blocks, RecvBlocks(op, buffers));
    REFIT_RETURN_IF_ERROR(
        service.SubmitRecv(op.src_rank, op.task_id, std::move(blocks)));
  }
  // Run first: it posts this rank's sends so peers can start receiving.
  REFIT_RETURN_IF_ERROR(service.Run());
  for (uint32_t i : rank_plan.local_copies) {
    REFIT_RETURN_IF_ERROR(CopyLocal(plan.ops[i], buffers));
  }
  return OkStatus();
}

}  // namespace refit::exec
