// End-to-end integrity over any transport: a CopyService decorator that
// sends an xxh3-64 of every message's bytes with the message and checks it on
// the receiving side (SwapOptions::verify = kChecksum, `refit run --verify
// checksum`; docs/RELIABILITY.md "Integrity").
//
// On the wire a message is its blocks followed by a 16-byte trailer
// {hash, epoch}: hash = XXH3_64bits over the message's bytes in block order,
// seeded with (source rank, destination rank, task, epoch); epoch = the
// caller's refit number (the session passes the group's weight version), the
// same on every rank. So a flipped, lost, reordered or duplicated byte, a
// message delivered to the wrong task or rank, and a stale message of an
// earlier refit replayed in place of this one all fail the check.
//
// Where the check happens: the inner transport still receives straight into
// the caller's blocks (no staging copy, so no extra memory); the receiver
// hashes them after the inner Run and Run fails before it returns, i.e.
// before any caller can use the bytes (the session then fails the refit on
// every rank and the weight version does not grow). The destination may
// therefore hold corrupt bytes after a failed Run, as after any failed refit.
// Hashing needs host-readable memory: the decorator declares host memory only,
// so CUDA tensors with verification are refused at binding, never skipped.
#ifndef REFIT_EXEC_CHECKSUM_COPY_SERVICE_H_
#define REFIT_EXEC_CHECKSUM_COPY_SERVICE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "refit/exec/copy_service.h"

namespace refit::exec {

/// Bytes a checksummed message carries beyond its blocks: {hash, epoch}.
inline constexpr uint64_t kChecksumTrailerBytes = 16;

/// The trailer's hash of `blocks` (host memory) for message (src, dst, task)
/// of refit `epoch`.
uint64_t MessageChecksum(std::span<const ConstBlock> blocks, int src, int dst,
                         uint64_t task, uint64_t epoch);

/// Names what message (src, dst, task) carries, e.g. "parameter
/// decoder.layers.0.mlp.linear_fc1.weight"; empty when unknown.
using TaskDescriber =
    std::function<std::string(int src, int dst, uint64_t task)>;

class ChecksumCopyService : public CopyService {
 public:
  /// Wraps `inner` (not owned; must outlive this) or owns it.
  explicit ChecksumCopyService(CopyService& inner, uint64_t epoch = 0);
  explicit ChecksumCopyService(std::unique_ptr<CopyService> inner,
                               uint64_t epoch = 0);

  /// The epoch of messages submitted from now on (sender and receiver must
  /// use the same one for a message).
  void set_epoch(uint64_t epoch) { epoch_ = epoch; }
  /// Adds "(<description>)" to mismatch errors.
  void set_describer(TaskDescriber describe) {
    describe_ = std::move(describe);
  }

  /// Received messages whose trailer did not match, since construction.
  uint64_t mismatches() const { return mismatches_; }
  /// Received messages checked (matching or not), since construction.
  uint64_t verified() const { return verified_; }

  int rank() const override { return inner_->rank(); }
  /// The inner transport's, host memory only, messages 16 bytes shorter.
  TransportCapabilities capabilities() const override;
  Status SubmitSend(int dst_rank, uint64_t task_id,
                    std::vector<ConstBlock> blocks) override;
  Status SubmitRecv(int src_rank, uint64_t task_id,
                    std::vector<MutBlock> blocks) override;
  /// The inner Run, then every received message's check. Errors: the inner
  /// Run's; else kDataLoss naming the first bad message's task, source and
  /// destination ranks (and how many more failed): "checksum mismatch" or
  /// "stale message of refit E".
  Status Run() override;
  Status CopyLocal(std::span<const ConstBlock> from,
                   std::span<const MutBlock> to) override;
  Status OrderAfter(uintptr_t cuda_stream) override;
  Status Close() override;

 private:
  struct Trailer {
    uint64_t hash = 0;
    uint64_t epoch = 0;
  };
  struct Recv {
    int src;
    uint64_t task;
    uint64_t epoch;
    std::vector<MutBlock> blocks;  // without the trailer
    Trailer* trailer;
  };

  // Errors: kDataLoss describing `r`'s mismatch; OK when it matches.
  Status Check(const Recv& r);

  std::unique_ptr<CopyService> owned_;
  CopyService* inner_;
  uint64_t epoch_;
  TaskDescriber describe_;
  // Trailers of the queued messages (stable addresses until Run returns).
  std::deque<Trailer> trailers_;
  std::vector<Recv> recvs_;
  uint64_t mismatches_ = 0;
  uint64_t verified_ = 0;
};

}  // namespace refit::exec

#endif  // REFIT_EXEC_CHECKSUM_COPY_SERVICE_H_
