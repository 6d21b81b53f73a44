#include "refit/transport/faulty/faulty_copy_service.h"

#include <algorithm>
#include <string>
#include <thread>
#include <utility>

namespace refit::exec {

namespace {

uint64_t Mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t MessageHash(uint64_t seed, int src, int dst, uint64_t task,
                     uint64_t run) {
  uint64_t h = Mix(seed);
  h = Mix(h ^ static_cast<uint64_t>(src));
  h = Mix(h ^ static_cast<uint64_t>(dst));
  h = Mix(h ^ task);
  return Mix(h ^ run);
}

bool IsCorruption(FaultKind k) {
  return k == FaultKind::kFlipBit || k == FaultKind::kTruncate ||
         k == FaultKind::kDuplicate || k == FaultKind::kReorder ||
         k == FaultKind::kReplay;
}

// The bytes of `blocks`, in order.
std::vector<std::byte> Gather(const std::vector<MutBlock>& blocks) {
  std::vector<std::byte> out(TotalBytes(blocks));
  const std::vector<MutBlock> to = {{out.data(), out.size(), 1, out.size()}};
  std::vector<ConstBlock> from;
  for (const MutBlock& b : blocks) {
    from.push_back({b.base, b.run_bytes, b.nruns, b.stride});
  }
  GatherScatter(from, to);
  return out;
}

void Scatter(const std::vector<std::byte>& bytes,
             const std::vector<MutBlock>& blocks) {
  const std::vector<ConstBlock> from = {
      {bytes.data(), bytes.size(), 1, bytes.size()}};
  GatherScatter(from, blocks);
}

}  // namespace

const char* FaultKindName(FaultKind kind) {
  static const char* const kNames[kFaultKinds] = {
      "none",    "flip-bit", "truncate", "duplicate",
      "reorder", "replay",   "drop",     "delay"};
  return kNames[static_cast<int>(kind)];
}

FaultKind FaultPlan::Decide(int src, int dst, uint64_t task,
                            uint64_t run) const {
  const double u = (MessageHash(seed, src, dst, task, run) >> 11) * 0x1.0p-53;
  double at = 0;
  for (int k = 1; k < kFaultKinds; ++k) {
    at += rate[k];
    if (u < at) return static_cast<FaultKind>(k);
  }
  return FaultKind::kNone;
}

uint64_t FaultPlan::Detail(int src, int dst, uint64_t task,
                           uint64_t run) const {
  return Mix(MessageHash(seed, src, dst, task, run) ^ 0xD1B54A32D192ED03ull);
}

uint64_t FaultLog::corruptions() const {
  uint64_t n = 0;
  for (int k = 0; k < kFaultKinds; ++k) {
    if (IsCorruption(static_cast<FaultKind>(k))) n += injected[k].load();
  }
  return n;
}

FaultyCopyService::FaultyCopyService(std::unique_ptr<CopyService> inner,
                                     const FaultPlan& plan, FaultLog& log)
    : inner_(std::move(inner)), plan_(plan), log_(log) {}

void FaultyCopyService::Count(FaultKind k) {
  log_.injected[static_cast<int>(k)].fetch_add(1);
}

Status FaultyCopyService::SubmitSend(int dst_rank, uint64_t task_id,
                                     std::vector<ConstBlock> blocks) {
  sends_.push_back({dst_rank, task_id, std::move(blocks)});
  return OkStatus();
}

Status FaultyCopyService::SubmitRecv(int src_rank, uint64_t task_id,
                                     std::vector<MutBlock> blocks) {
  recvs_.push_back(
      {src_rank, task_id, FaultKind::kNone, std::move(blocks), {}});
  return OkStatus();
}

Status FaultyCopyService::Die() {
  const size_t half = sends_.size() / 2;
  for (size_t i = 0; i < half; ++i) {
    REFIT_RETURN_IF_ERROR(inner_->SubmitSend(sends_[i].dst, sends_[i].task,
                                             std::move(sends_[i].blocks)));
  }
  const Status st = inner_->Run();
  const size_t total = sends_.size();
  sends_.clear();
  recvs_.clear();
  dead_ = true;
  log_.deaths.fetch_add(1);
  return IoError("faulty transport: rank " + std::to_string(rank()) +
                 " died in run " + std::to_string(run_ - 1) +
                 " (injected): sent " + std::to_string(half) + " of " +
                 std::to_string(total) + " messages, received none" +
                 (st.ok() ? "" : "; " + st.message()));
}

Status FaultyCopyService::Run() {
  const uint64_t run = run_++;
  if (dead_) {
    sends_.clear();
    recvs_.clear();
    return IoError("faulty transport: rank " + std::to_string(rank()) +
                   " died earlier (injected)");
  }
  if (plan_.dead_rank == rank() && static_cast<int>(run) == plan_.die_at_run) {
    return Die();
  }
  for (Send& s : sends_) {
    const FaultKind f = plan_.Decide(rank(), s.dst, s.task, run);
    if (f == FaultKind::kDrop) {
      Count(f);
      continue;
    }
    if (f == FaultKind::kDelay) {
      Count(f);
      std::this_thread::sleep_for(plan_.delay);
    }
    REFIT_RETURN_IF_ERROR(
        inner_->SubmitSend(s.dst, s.task, std::move(s.blocks)));
  }
  sends_.clear();
  for (Recv& r : recvs_) {
    const uint64_t n = TotalBytes(r.blocks);
    FaultKind f = plan_.Decide(r.src, rank(), r.task, run);
    const auto last = last_.find({r.src, r.task});
    const bool applies =
        (f == FaultKind::kFlipBit || f == FaultKind::kTruncate)    ? n >= 1
        : (f == FaultKind::kDuplicate || f == FaultKind::kReorder) ? n >= 2
        : f == FaultKind::kReplay
            ? last != last_.end() && last->second.size() == n
            : false;
    if (!applies) {
      REFIT_RETURN_IF_ERROR(inner_->SubmitRecv(r.src, r.task, r.blocks));
      continue;
    }
    r.fault = f;
    r.staging.resize(n);
    REFIT_RETURN_IF_ERROR(
        inner_->SubmitRecv(r.src, r.task, {{r.staging.data(), n, 1, n}}));
  }
  Status st = inner_->Run();
  if (st.ok()) {
    for (Recv& r : recvs_) {
      if (r.fault != FaultKind::kNone) Deliver(r);
      if (plan_.rate[static_cast<int>(FaultKind::kReplay)] > 0) {
        last_[{r.src, r.task}] =
            r.fault != FaultKind::kNone ? r.staging : Gather(r.blocks);
      }
    }
  }
  recvs_.clear();
  return st;
}

void FaultyCopyService::Deliver(Recv& r) {
  std::vector<std::byte> out = r.staging;
  const uint64_t n = out.size();
  const uint64_t d = plan_.Detail(r.src, rank(), r.task, run_ - 1);
  switch (r.fault) {
    case FaultKind::kFlipBit:
      out[(d % (n * 8)) / 8] ^= std::byte(1 << (d % 8));
      break;
    case FaultKind::kTruncate: {
      const uint64_t lost = 1 + d % std::max<uint64_t>(1, n / 2);
      const std::vector<std::byte> before = Gather(r.blocks);
      std::copy(before.end() - lost, before.end(), out.end() - lost);
      break;
    }
    case FaultKind::kDuplicate: {
      const uint64_t q = std::max<uint64_t>(1, n / 4);
      std::copy(out.begin(), out.begin() + q, out.begin() + q);
      break;
    }
    case FaultKind::kReorder:
      std::rotate(out.begin(), out.begin() + n / 2, out.end());
      break;
    case FaultKind::kReplay:
      out = last_[{r.src, r.task}];
      break;
    default:
      break;
  }
  if (out != r.staging) Count(r.fault);
  Scatter(out, r.blocks);
}

}  // namespace refit::exec
