// Fault injection for tests: a CopyService decorator that, by a seeded plan,
// corrupts, drops and delays messages of any transport and can make a rank
// die mid-refit (docs/RELIABILITY.md "Integrity"). Stack it under
// exec::ChecksumCopyService to show every corruption is caught, or alone to
// show what goes unnoticed without checksums.
//
// Where each fault acts:
//  - receiving side (the message arrives into a private buffer, then reaches
//    the caller's blocks altered): kFlipBit (one bit), kTruncate (the tail of
//    the message never lands: those destination bytes keep what they held),
//    kDuplicate (the first quarter lands twice, over the second quarter),
//    kReorder (the two halves land swapped), kReplay (the previous run's
//    bytes of the same message land instead of this run's);
//  - sending side: kDrop (the message is never submitted: its receiver must
//    time out), kDelay (submitted after FaultPlan::delay);
//  - a dying rank (FaultPlan::dead_rank at its run FaultPlan::die_at_run)
//    sends only the first half of its messages of that run, receives none
//    and fails its Run (kIoError); its later Runs fail at once.
// A corruption is counted only when it changed at least one delivered byte
// (a swap of two equal halves is no corruption).
#ifndef REFIT_TRANSPORT_FAULTY_FAULTY_COPY_SERVICE_H_
#define REFIT_TRANSPORT_FAULTY_FAULTY_COPY_SERVICE_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "refit/exec/copy_service.h"

namespace refit::exec {

enum class FaultKind {
  kNone = 0,
  kFlipBit,
  kTruncate,
  kDuplicate,
  kReorder,
  kReplay,
  kDrop,
  kDelay,
};
inline constexpr int kFaultKinds = 8;
const char* FaultKindName(FaultKind kind);

/// Which message gets which fault: a pure function of the seed and the
/// message (source, destination, task, run number of the endpoint), so every
/// rank derives the same plan with no communication.
struct FaultPlan {
  uint64_t seed = 0;
  /// Probability per message of each fault (their sum at most 1), indexed by
  /// FaultKind (kNone's entry unused).
  std::array<double, kFaultKinds> rate{};
  /// How long a kDelay message waits before it is submitted.
  std::chrono::milliseconds delay{20};
  /// The rank that dies (-1: none), at its Run number `die_at_run` (0: the
  /// first).
  int dead_rank = -1;
  int die_at_run = 0;

  FaultPlan& With(FaultKind kind, double p) {
    rate[static_cast<int>(kind)] = p;
    return *this;
  }
  /// The fault of message (src, dst, task) in run `run`.
  FaultKind Decide(int src, int dst, uint64_t task, uint64_t run) const;
  /// A second independent number for the same message (where to flip, ...).
  uint64_t Detail(int src, int dst, uint64_t task, uint64_t run) const;
};

/// What was injected, over every rank sharing it (thread-safe).
struct FaultLog {
  std::array<std::atomic<uint64_t>, kFaultKinds> injected{};
  std::atomic<uint64_t> deaths{0};  ///< ranks that died
  /// Corruptions (flip, truncate, duplicate, reorder, replay) that changed
  /// the delivered bytes.
  uint64_t corruptions() const;
  uint64_t count(FaultKind k) const {
    return injected[static_cast<int>(k)].load();
  }
};

class FaultyCopyService : public CopyService {
 public:
  /// Wraps `inner` (owned); `log` is shared by the ranks and outlives them.
  FaultyCopyService(std::unique_ptr<CopyService> inner, const FaultPlan& plan,
                    FaultLog& log);

  int rank() const override { return inner_->rank(); }
  TransportCapabilities capabilities() const override {
    return inner_->capabilities();
  }
  Status SubmitSend(int dst_rank, uint64_t task_id,
                    std::vector<ConstBlock> blocks) override;
  Status SubmitRecv(int src_rank, uint64_t task_id,
                    std::vector<MutBlock> blocks) override;
  /// Errors: the inner Run's; kIoError on the dying rank.
  Status Run() override;
  Status CopyLocal(std::span<const ConstBlock> from,
                   std::span<const MutBlock> to) override {
    return inner_->CopyLocal(from, to);
  }
  Status Close() override { return inner_->Close(); }

 private:
  struct Send {
    int dst;
    uint64_t task;
    std::vector<ConstBlock> blocks;
  };
  struct Recv {
    int src;
    uint64_t task;
    FaultKind fault;
    std::vector<MutBlock> blocks;
    std::vector<std::byte> staging;  // holds the message for a corruption
  };

  Status Die();
  // Moves a received corrupted message into its blocks, altered.
  void Deliver(Recv& r);
  void Count(FaultKind k);

  std::unique_ptr<CopyService> inner_;
  FaultPlan plan_;
  FaultLog& log_;
  uint64_t run_ = 0;
  bool dead_ = false;
  std::vector<Send> sends_;
  std::vector<Recv> recvs_;
  // Last run's bytes of each received message (src, task), for kReplay.
  std::map<std::pair<int, uint64_t>, std::vector<std::byte>> last_;
};

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_FAULTY_FAULTY_COPY_SERVICE_H_
