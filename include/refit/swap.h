// Refit over caller-owned tensors: the C++ form of Megatron's refit module
// (megatron/core/resharding/refit.py: prepare_swap_model_weights,
// swap_model_weights, reshard_model_weights, get_or_create_service,
// clear_*_cache; megatron_resharding.md §1.2, §1.7).
//
// Every rank of the group calls the same function with its own models and
// communicator: collocated ranks pass both models, a source-only rank passes
// dst = nullptr, a destination-only rank src = nullptr, an idle rank both
// nullptr (it still joins the collectives). Source ranks are group ranks
// [src_rank_offset, +src world), destination ranks [dst_rank_offset, +dst
// world); collocated sides share ranks [0, group size).
//
// The first call for a (rank, source and destination layouts, num experts,
// rank offsets, world size, model fingerprint, transform) builds the reshard
// plan (every rank derives the same plan from one all-gather of the inputs,
// no central planner) and caches it with its format transform; later calls
// only check the bound tensors and move bytes. Every call checks every bound
// tensor (name, shape, dtype, contiguity, memory kind) on every rank before
// any byte moves: a bad binding anywhere fails the call on every rank with
// the same one-line error, naming the rank and the tensor, and no destination
// byte changes.
#ifndef REFIT_SWAP_H_
#define REFIT_SWAP_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "refit/communicator.h"
#include "refit/core/format/dst_format.h"
#include "refit/core/status.h"
#include "refit/sharded_model.h"

namespace refit {

namespace exec {
class CopyService;
}

/// End-to-end integrity checks of a refit's messages (docs/RELIABILITY.md
/// "Integrity").
enum class VerifyMode {
  kNone,  ///< trust the transport: a corrupted message goes unnoticed
  /// Every message carries an xxh3-64 of its bytes, seeded with its source
  /// and destination ranks, task and the refit's weight version (16 bytes
  /// more per message); the receiver checks it after the bytes land and
  /// before the call returns: a mismatch fails the refit on every rank with
  /// kDataLoss naming the task, source and destination rank (the weight
  /// version stays). Host memory only: CUDA tensors are refused at binding.
  kChecksum,
  /// The default: kChecksum when no rank of the group binds device memory
  /// (every rank decides alike, from the inputs all ranks gathered), else
  /// kNone; SwapReport::verified says which. Checksums are the cheapest
  /// mode that catches every fault the faulty transport injects (bit
  /// flips, truncation, duplication, reordering); their cost on host
  /// refits is in docs/RELIABILITY.md. Device memory has no hash kernel yet.
  kAuto,
};

struct SwapOptions {
  /// Group rank of source layout rank 0, and of destination layout rank 0.
  int src_rank_offset = 0;
  int dst_rank_offset = 0;
  /// The destination format (casts, block FP8, MXFP8; core/format/
  /// dst_format.h, ApplyDstDType parses the `refit run --dst-dtype` values);
  /// nullopt: every destination tensor is a copy in the source dtype.
  std::optional<PrecisionOptions> transform;
  /// The caller's CUDA stream (a cudaStream_t as an integer; 0 is the legacy
  /// default stream). When this rank binds CUDA tensors, the refit moves no
  /// byte before the work queued on it so far has finished (e.g. the
  /// optimizer step that wrote the source weights: Megatron's refit read
  /// stale local copies after a fused optimizer step for want of this), and
  /// every byte it writes has landed when the call returns, so work queued
  /// afterwards on any stream reads the new weights. Ignored for host
  /// tensors; not part of the plan's cache key.
  uintptr_t cuda_stream = 0;
  /// Node fan-out (core/planner.h PlanOptions::fanout_gpus_per_node): > 0
  /// places group ranks this many to a node in rank order (rank r on node
  /// r / fanout_gpus_per_node); where several destination ranks of a node
  /// hold the same shard, one receives the bytes no rank of the node holds
  /// and forwards them to the others once its own receives are done (a
  /// second phase on the same copy service). 0: off. Every rank must pass
  /// the same value (it is part of the plan's key).
  int fanout_gpus_per_node = 0;
  /// Integrity checks; every rank must pass the same value (it is part of
  /// the inputs the ranks agree on).
  VerifyMode verify = VerifyMode::kAuto;
  /// Also fill SwapReport::dst_digests after the refit (one more read of
  /// this rank's destination tensors). Host tensors only: a CUDA destination
  /// tensor fails the call on every rank before any byte moves.
  bool dst_digests = false;
  /// All-or-nothing destination bytes. The refit writes into a host shadow
  /// copy of this rank's destination tensors (filled from them first, so
  /// bytes the plan does not write, e.g. vocabulary padding rows, stay as
  /// they were) and copies it into the caller's tensors only after the
  /// agreement round said every rank's refit succeeded; on any failure the
  /// caller's destination bytes are unchanged (Communicator::partial_tensors
  /// stays empty). Costs this rank host memory as large as its destination
  /// tensors (SwapReport::shadow_bytes), kept with the communicator between
  /// atomic calls and reused while the destination tensors stay at the same
  /// addresses (freed by ClearPlanCache, ClearAllCaches or the
  /// communicator's destruction), and two copies of the destination bytes
  /// a call (SwapReport::shadow_ms, publish_ms); docs/RELIABILITY.md
  /// "All-or-nothing versions". Host tensors only: a CUDA destination tensor
  /// fails the call on every rank with kInvalidArgument naming the rank and
  /// the tensor, before any byte moves. Every rank must pass the same value
  /// (it is part of the inputs the ranks agree on). Guarantee and limit: a
  /// rank publishes only once it has every rank's success; a rank that dies
  /// inside the agreement round itself can still leave the others unsure
  /// (they fail with kDeadlineExceeded and publish nothing).
  bool atomic = false;
};

/// The digest of one destination tensor (SwapOptions::dst_digests).
struct TensorDigest {
  std::string name;   ///< as bound in the destination ShardedModel
  uint64_t xxh3 = 0;  ///< XXH3_64bits (seed 0) of its nbytes() bytes
};

/// What one call did on this rank. Times are this rank's wall times in ms.
struct SwapReport {
  bool plan_built = false;  ///< this call built the plan (no cache hit)
  /// With plan_built: the parameters this call planned, summed over the
  /// destinations: all of them, or, when the call differs from the cached
  /// plan only in a destination's expert placement (vLLM EPLB moving
  /// experts between refits; ParallelConfig::expert_placement), only the
  /// routed experts whose EP ranks changed (core/planner.h
  /// RebuildReshardPlan; the rebuilt plan replaces the cached one).
  uint64_t params_replanned = 0;
  /// To / from other ranks, before conversion; with fan-out the forwarded
  /// bytes too.
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t bytes_local = 0;  ///< copied within this rank
  /// Destination bytes copied on this rank from another destination model
  /// holding the same shard (DestinationModel), data and scales.
  uint64_t bytes_copied = 0;
  uint64_t messages_sent = 0;  ///< one per destination rank (and forward)
  uint64_t messages_received = 0;
  double plan_ms = 0;    ///< plan lookup (or build), checks and agreement
  double pack_ms = 0;    ///< send-side conversions and submission
  double wire_ms = 0;    ///< the transport's run: every message moved
  double unpack_ms = 0;  ///< receive-side conversions and local copies
  double total_ms = 0;   ///< the whole call
  /// Scratch the format transform holds on this rank, bytes: converted send
  /// pieces and whole-shard staging of receiver-side quantisation.
  uint64_t staging_bytes = 0;
  /// Every message of this refit carried a checksum its receiver checked
  /// (SwapOptions::verify kChecksum, or kAuto over host memory).
  bool verified = false;
  /// The group's weight version after this call (Communicator::
  /// weight_version): incremented once per refit that succeeded on every
  /// rank.
  uint64_t weight_version = 0;
  /// With SwapOptions::dst_digests: every destination tensor this rank
  /// binds, in name order, hashed after the refit, to compare with the same
  /// hash computed elsewhere (e.g. by the engine's loader of the same
  /// weights); empty otherwise.
  std::vector<TensorDigest> dst_digests;
  /// With SwapOptions::atomic: bytes of this rank's shadow copy (the merged
  /// byte ranges of its destination tensors); 0 otherwise.
  uint64_t shadow_bytes = 0;
  /// With SwapOptions::atomic: ms to copy the caller's destination bytes
  /// into the shadow before the moves (the first touch of a fresh
  /// allocation: its page faults included), and ms to copy the shadow into
  /// the caller's tensors after the agreement (publish); 0 otherwise. Both
  /// are part of total_ms.
  double shadow_ms = 0;
  double publish_ms = 0;
};

/// One of the destination models of a refit into several destination
/// layouts at once: a draft model (an MTP head, part=mtp, with its own
/// sizes) beside the main model on the same ranks, or two inference pools
/// (prefill and decode) on different ranks, or both (users_and_engines.md:
/// no published weight sync does either in one pass).
///
/// Every distinct (layout, world size, rank offset) that some rank binds is
/// one destination of the refit; each rank of a destination's range [offset,
/// +world) must bind it, and the others do not (a source-only rank binds
/// none and still learns every destination from the all-gather). One plan
/// per destination, all built from one all-gather, cached together, moved
/// in one Run of the copy service and agreed in one round: one weight
/// version. Where a rank holds a parameter with the same bytes in two
/// destinations (same family, shard and destination format, e.g. the
/// embedding and lm_head of a main model and its MTP draft at the same TP),
/// the sources send it once: the destination first in the order of
/// "LAYOUT@WORLD+OFFSET" text receives it and the others are copied from it
/// on the rank (SwapReport::bytes_copied); not with fan-out, where each
/// destination receives its own. Destinations on different ranks each
/// receive their bytes from the sources.
struct DestinationModel {
  const ShardedModel* model = nullptr;  ///< this rank's tensors of it
  int rank_offset = 0;                  ///< group rank of the layout's rank 0
};

/// Builds (or finds) and caches the plan and format transform of this call's
/// inputs, without moving bytes. Collective on a cache miss.
/// Errors: kInvalidArgument naming the field for layouts that do not divide,
/// rank offsets that do not fit the group, models whose ranks differ from
/// their group rank minus the offset; kFailedPrecondition when ranks disagree
/// on the model or layouts ("rank R's inputs differ from rank 0's"); the
/// planner's and the transform's; kDeadlineExceeded from the collectives.
Status PrepareSwapModelWeights(const ShardedModel* src, const ShardedModel* dst,
                               Communicator& group,
                               const SwapOptions& options = {});

/// Refits `src` (this rank's source tensors) into `dst` (its destination
/// tensors) in place over the group's cached copy service
/// (GetOrCreateService). Errors: PrepareSwapModelWeights's; a bad binding
/// ("rank R: <side> tensor NAME: ..."): kNotFound for a missing tensor,
/// kInvalidArgument for an unknown one, a wrong shape, dtype, strides or a
/// memory kind the transport cannot access; the
/// transport's (kDeadlineExceeded when a peer makes no progress for the
/// timeout) and the conversions'. Every rank returns the same error; the
/// weight version then stays as it was.
///
/// Versions: the weight version advances only after the agreement round (one
/// all-gather of every rank's status) that follows the moves said every rank
/// succeeded; a rank that failed or did not answer fails the call on every
/// rank and the version stays. When a failure comes after bytes started to
/// move, a rank's destination tensors may hold new, old or partial bytes:
/// without SwapOptions::atomic this rank's error message then ends with
/// "; rank R: N destination tensors may hold partial bytes (A, B, C and K
/// more; Communicator::partial_tensors)" and group.partial_tensors() names
/// them; failures before any byte moved (binding, agreement on inputs)
/// change no destination byte and name none.
Result<SwapReport> SwapModelWeights(const ShardedModel* src,
                                    const ShardedModel* dst,
                                    Communicator& group,
                                    const SwapOptions& options = {});

/// SwapModelWeights over `service`, an endpoint of this rank on the group's
/// transport that the caller owns.
Result<SwapReport> ReshardModelWeights(const ShardedModel* src,
                                       const ShardedModel* dst,
                                       Communicator& group,
                                       exec::CopyService& service,
                                       const SwapOptions& options = {});

/// The same three calls into several destination models at once
/// (DestinationModel): `dsts` are this rank's destination models (empty on
/// a rank that holds none), each with its own rank offset
/// (SwapOptions::dst_rank_offset is not read). The single-destination calls
/// are these with one model at SwapOptions::dst_rank_offset.
/// Errors: theirs; kInvalidArgument when a rank binds two destination
/// models of the same layout, world and offset, or more than one with
/// SwapOptions::atomic or dst_digests (one shadow and one name space per
/// rank); a rank of a destination's range that does not bind it fails on
/// every rank, naming the rank.
Status PrepareSwapModelWeights(const ShardedModel* src,
                               std::span<const DestinationModel> dsts,
                               Communicator& group,
                               const SwapOptions& options = {});
Result<SwapReport> SwapModelWeights(const ShardedModel* src,
                                    std::span<const DestinationModel> dsts,
                                    Communicator& group,
                                    const SwapOptions& options = {});
Result<SwapReport> ReshardModelWeights(const ShardedModel* src,
                                       std::span<const DestinationModel> dsts,
                                       Communicator& group,
                                       exec::CopyService& service,
                                       const SwapOptions& options = {});

/// The cached copy service of this rank of `group`, created on first use.
/// Errors: the transport's.
Result<exec::CopyService*> GetOrCreateService(Communicator& group);

/// Closes and forgets every cached copy service (of every group).
void ClearServiceCache();
/// Forgets every cached plan and format transform, and frees the shadow
/// copies kept for SwapOptions::atomic.
void ClearPlanCache();
/// Both.
void ClearAllCaches();

}  // namespace refit

#endif  // REFIT_SWAP_H_
