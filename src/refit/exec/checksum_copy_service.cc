#include "refit/exec/checksum_copy_service.h"

// XXH3_state_t on the stack.
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
// libxxhash's runtime dispatch (AVX2 / AVX-512 where the CPU has them; the
// same hashes): 1.4 to 2x the SSE2 default on 256 B to 64 KiB runs.
#if defined(__x86_64__) && __has_include(<xxh_x86dispatch.h>)
#include <xxh_x86dispatch.h>
#endif

#include <cinttypes>
#include <cstdio>
#include <utility>

namespace refit::exec {

namespace {

// "0x0123456789abcdef".
std::string Hex(uint64_t v) {
  char text[24];
  std::snprintf(text, sizeof(text), "0x%016" PRIx64, v);
  return text;
}

// Mutable blocks as the const blocks they are read as.
std::vector<ConstBlock> AsConst(const std::vector<MutBlock>& blocks) {
  std::vector<ConstBlock> out;
  out.reserve(blocks.size());
  for (const MutBlock& b : blocks) {
    out.push_back({b.base, b.run_bytes, b.nruns, b.stride});
  }
  return out;
}

}  // namespace

uint64_t MessageChecksum(std::span<const ConstBlock> blocks, int src, int dst,
                         uint64_t task, uint64_t epoch) {
  const uint64_t key[4] = {static_cast<uint64_t>(src),
                           static_cast<uint64_t>(dst), task, epoch};
  XXH3_state_t state;
  XXH3_64bits_reset_withSeed(&state, XXH3_64bits(key, sizeof(key)));
  for (const ConstBlock& b : blocks) {
    if (b.run_bytes == 0) continue;
    for (uint64_t i = 0; i < b.nruns; ++i) {
      XXH3_64bits_update(&state, b.base + i * b.stride, b.run_bytes);
    }
  }
  return XXH3_64bits_digest(&state);
}

ChecksumCopyService::ChecksumCopyService(CopyService& inner, uint64_t epoch)
    : inner_(&inner), epoch_(epoch) {}

ChecksumCopyService::ChecksumCopyService(std::unique_ptr<CopyService> inner,
                                         uint64_t epoch)
    : owned_(std::move(inner)), inner_(owned_.get()), epoch_(epoch) {}

TransportCapabilities ChecksumCopyService::capabilities() const {
  TransportCapabilities caps = inner_->capabilities();
  const bool reads = caps.CanRead(MemoryKind::kHost);
  const bool writes = caps.CanWrite(MemoryKind::kHost);
  caps.reads.clear();
  caps.writes.clear();
  if (reads) caps.reads.push_back(MemoryKind::kHost);
  if (writes) caps.writes.push_back(MemoryKind::kHost);
  if (caps.max_message_bytes != UINT64_MAX) {
    caps.max_message_bytes =
        caps.max_message_bytes > kChecksumTrailerBytes
            ? caps.max_message_bytes - kChecksumTrailerBytes
            : 0;
  }
  return caps;
}

Status ChecksumCopyService::SubmitSend(int dst_rank, uint64_t task_id,
                                       std::vector<ConstBlock> blocks) {
  Trailer& t = trailers_.emplace_back();
  t.hash = MessageChecksum(blocks, rank(), dst_rank, task_id, epoch_);
  t.epoch = epoch_;
  blocks.push_back({reinterpret_cast<const std::byte*>(&t),
                    kChecksumTrailerBytes, 1, kChecksumTrailerBytes});
  return inner_->SubmitSend(dst_rank, task_id, std::move(blocks));
}

Status ChecksumCopyService::SubmitRecv(int src_rank, uint64_t task_id,
                                       std::vector<MutBlock> blocks) {
  Trailer& t = trailers_.emplace_back();
  Recv r{src_rank, task_id, epoch_, blocks, &t};
  blocks.push_back({reinterpret_cast<std::byte*>(&t), kChecksumTrailerBytes, 1,
                    kChecksumTrailerBytes});
  REFIT_RETURN_IF_ERROR(
      inner_->SubmitRecv(src_rank, task_id, std::move(blocks)));
  // Checked by the next Run only once the transport took it.
  recvs_.push_back(std::move(r));
  return OkStatus();
}

Status ChecksumCopyService::Check(const Recv& r) {
  const uint64_t want =
      MessageChecksum(AsConst(r.blocks), r.src, rank(), r.task, r.epoch);
  ++verified_;
  if (r.trailer->hash == want && r.trailer->epoch == r.epoch) {
    return OkStatus();
  }
  ++mismatches_;
  std::string what = "checksum: task " + std::to_string(r.task) +
                     " from rank " + std::to_string(r.src) + " to rank " +
                     std::to_string(rank());
  if (describe_) {
    const std::string d = describe_(r.src, rank(), r.task);
    if (!d.empty()) what += " (" + d + ")";
  }
  const uint64_t bytes = TotalBytes(std::span<const MutBlock>(r.blocks));
  if (r.trailer->epoch != r.epoch) {
    return DataLoss(what + ": stale message of refit " +
                    std::to_string(r.trailer->epoch) + ", expected refit " +
                    std::to_string(r.epoch));
  }
  return DataLoss(what + ": checksum mismatch: xxh3-64 of the " +
                  std::to_string(bytes) + " received bytes is " + Hex(want) +
                  ", the sender's " + Hex(r.trailer->hash));
}

Status ChecksumCopyService::Run() {
  Status st = inner_->Run();
  std::vector<Recv> recvs = std::move(recvs_);
  recvs_.clear();
  if (st.ok()) {
    uint64_t failed = 0;
    for (const Recv& r : recvs) {
      Status one = Check(r);
      if (!one.ok() && failed++ == 0) st = std::move(one);
    }
    if (failed > 1) {
      st = Status(st.code(), st.message() + " (and " +
                                 std::to_string(failed - 1) +
                                 " more messages to this rank)");
    }
  }
  trailers_.clear();
  return st;
}

Status ChecksumCopyService::CopyLocal(std::span<const ConstBlock> from,
                                      std::span<const MutBlock> to) {
  return inner_->CopyLocal(from, to);
}

Status ChecksumCopyService::OrderAfter(uintptr_t cuda_stream) {
  return inner_->OrderAfter(cuda_stream);
}

Status ChecksumCopyService::Close() { return inner_->Close(); }

}  // namespace refit::exec
