#include "refit/exec/session/rank_session.h"

namespace refit::exec {

namespace {

// The layout rank of global rank `rank` on one side, or -1 if it has none.
int SideRank(int rank, int offset, const Layout& layout) {
  const int r = rank - offset;
  return r >= 0 && r < layout.world_size() ? r : -1;
}

Status SideMismatch(int rank, const char* side, bool holds) {
  return InvalidArgument("rank " + std::to_string(rank) + ": " +
                         (holds ? std::string("holds a ") + side +
                                      " shard but got no " + side + " model"
                                : std::string("got a ") + side +
                                      " model but holds no rank of the " +
                                      side + " layout"));
}

bool HasCuda(const ShardedModel* model) {
  if (model == nullptr) return false;
  for (const auto& [name, view] : model->tensors) {
    if (view.memory == MemoryKind::kCuda) return true;
  }
  return false;
}

// The one memory kind of every tensor `src` and `dst` hold (host when they
// hold none): a rank that converts formats runs its kernels on one kind.
Result<MemoryKind> ConvertingMemory(const ShardedModel* src,
                                    const ShardedModel* dst, int rank) {
  std::string first;
  MemoryKind kind = MemoryKind::kHost;
  for (const auto& [model, side] :
       {std::pair{src, "source"}, {dst, "destination"}}) {
    if (model == nullptr) continue;
    for (const auto& [name, view] : model->tensors) {
      const std::string which = std::string(side) + " tensor " + name;
      if (first.empty()) {
        first = which;
        kind = view.memory;
      } else if (view.memory != kind) {
        return Unimplemented(
            "rank " + std::to_string(rank) + ": " + which + " is " +
            std::string(MemoryKindName(view.memory)) + " memory but " + first +
            " is " + std::string(MemoryKindName(kind)) +
            ": a refit with a destination format converts on one kind of "
            "memory per rank");
      }
    }
  }
  return kind;
}

}  // namespace

RankSession::RankSession(std::shared_ptr<const SessionPlan> plan, int rank)
    : plan_(std::move(plan)), rank_(rank) {
  const SessionPlan& p = *plan_;
  const size_t n = p.spec->params.size();
  buffers_.src.assign(n, nullptr);
  buffers_.dst.assign(n, nullptr);
  src_rank_ = SideRank(rank, p.topo.src_rank_offset, p.topo.src);
  dst_rank_ = SideRank(rank, p.topo.dst_rank_offset, p.topo.dst);
  if (src_rank_ >= 0) {
    src_ = std::make_unique<ShardArena>(
        ShardArena::Geometry(*p.spec, p.topo.src, src_rank_));
    src_scales_ = std::make_unique<SourceScales>();
    src_scales_->shards = src_.get();
    src_scales_->scales = ShardScales::Layouts(*p.spec, p.formats, *src_,
                                               ShardScales::Side::kSource);
    const ShardScales& sc = src_scales_->scales;
    src_binding_.emplace(
        *p.spec, p.formats, p.topo.src, src_rank_, *src_,
        [&sc](uint32_t q) -> const ScaleLayout& { return sc.layout(q); },
        SideBinding::Side::kSource);
  }
  if (dst_rank_ >= 0) {
    dst_ = std::make_unique<DstTensors>(
        DstTensors::Geometry(p.dst_spec, p.formats, p.topo.dst, dst_rank_));
    const DstTensors& d = *dst_;
    dst_binding_.emplace(
        p.dst_spec, p.formats, p.topo.dst, dst_rank_, d.data(),
        [&d](uint32_t q) -> const ScaleLayout& { return d.scale_layout(q); },
        SideBinding::Side::kDestination);
  }
  if (p.formats.any_conversion() && (src_ || dst_)) {
    transform_ = std::make_unique<FormatTransform>(
        *p.spec, p.formats, dst_.get(), rank, src_scales_.get());
  }
  rank_plan_ = ExtractRankPlan(*p.plan, rank);
  CountBytes();
}

void RankSession::CountBytes() {
  const ReshardPlan& plan = *plan_->plan;
  for (uint32_t i : rank_plan_.sends) counts_.bytes_sent += plan.ops[i].bytes;
  for (uint32_t i : rank_plan_.recvs) {
    counts_.bytes_received += plan.ops[i].bytes;
  }
  for (uint32_t i : rank_plan_.local_copies) {
    counts_.bytes_local += plan.ops[i].bytes;
  }
  for (uint32_t i : rank_plan_.forward_sends) {
    counts_.bytes_sent += plan.forwards[i].bytes;
  }
  for (uint32_t i : rank_plan_.forward_recvs) {
    counts_.bytes_received += plan.forwards[i].bytes;
  }
  counts_.messages_sent =
      rank_plan_.sends.size() + rank_plan_.forward_sends.size();
  counts_.messages_received =
      rank_plan_.recvs.size() + rank_plan_.forward_recvs.size();
}

Status RankSession::Bind(const ShardedModel* src, const ShardedModel* dst,
                         const TransportCapabilities& transport) {
  if ((src != nullptr) != (src_rank_ >= 0)) {
    return SideMismatch(rank_, "source", src_rank_ >= 0);
  }
  if ((dst != nullptr) != (dst_rank_ >= 0)) {
    return SideMismatch(rank_, "destination", dst_rank_ >= 0);
  }
  binds_cuda_ = HasCuda(src) || HasCuda(dst);
  if (transform_) {
    REFIT_ASSIGN_OR_RETURN(const MemoryKind kind,
                           ConvertingMemory(src, dst, rank_));
    REFIT_RETURN_IF_ERROR(transform_->UseMemory(kind));
  }
  if (src != nullptr) {
    REFIT_RETURN_IF_ERROR(
        src_binding_->Bind(*src, rank_, transport.reads,
                           [this](uint32_t p, bool scale, std::byte* data) {
                             if (scale) {
                               src_scales_->scales.Bind(p, data);
                             } else {
                               src_->Bind(p, data);
                               buffers_.src[p] = data;
                             }
                           }));
  }
  if (dst != nullptr) {
    REFIT_RETURN_IF_ERROR(
        dst_binding_->Bind(*dst, rank_, transport.writes,
                           [this](uint32_t p, bool scale, std::byte* data) {
                             if (scale) {
                               dst_->BindScales(p, data);
                             } else {
                               dst_->BindData(p, data);
                               buffers_.dst[p] = data;
                             }
                           }));
  }
  return OkStatus();
}

uint64_t RankSession::staging_bytes() const {
  return transform_ ? transform_->staging_bytes() : 0;
}

std::span<std::byte> RankSession::DstData(uint32_t p) const {
  if (!dst_ || dst_->data().data(p) == nullptr) return {};
  return {dst_->data().data(p), dst_->data().shard_bytes(p)};
}

std::span<std::byte> RankSession::DstScales(uint32_t p) const {
  if (!dst_ || dst_->scales(p) == nullptr) return {};
  return {dst_->scales(p), dst_->scale_layout(p).bytes};
}

std::string RankSession::DescribeMessage(int src, int dst,
                                         uint64_t task) const {
  constexpr size_t kNamed = 3;
  for (const auto* ops : {&plan_->plan->ops, &plan_->plan->forwards}) {
    for (const TransferOp& op : *ops) {
      if (op.src_rank != src || op.dst_rank != dst || op.task_id != task) {
        continue;
      }
      std::vector<uint32_t> params;
      for (const Piece& p : op.pieces) {
        if (params.empty() || params.back() != p.dst_param) {
          params.push_back(p.dst_param);
        }
      }
      std::string text = params.size() == 1 ? "parameter " : "parameters ";
      for (size_t i = 0; i < params.size() && i < kNamed; ++i) {
        text += (i > 0 ? ", " : "") + plan_->dst_spec.params[params[i]].name;
      }
      if (params.size() > kNamed) {
        text += " and " + std::to_string(params.size() - kNamed) + " more";
      }
      return text;
    }
  }
  return {};
}

}  // namespace refit::exec
