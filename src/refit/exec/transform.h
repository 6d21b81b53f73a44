// The reshard transform hook: a conversion of pieces between the sender's
// source shard and the receiver's destination, with the shape of Megatron's
// ReshardTransform (resharding/transforms.py: should_transform /
// prepare_send / prepare_recv / finalize_recv; megatron_resharding.md §3.1).
// The executor calls it for every piece of a transformed parameter and knows
// nothing of formats: casts and quantisations are transforms.
#ifndef REFIT_EXEC_TRANSFORM_H_
#define REFIT_EXEC_TRANSFORM_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "refit/core/planner.h"
#include "refit/core/status.h"
#include "refit/exec/copy_service.h"
#include "refit/exec/format_kernels.h"

namespace refit::exec {

/// Scratch memory of one refit (converted send bytes, receive staging),
/// reused by the next: after Reset, the same sequence of Allocate calls (the
/// same plan) gets the same memory back without allocating.
class WireBuffers {
 public:
  /// Host memory.
  WireBuffers() : WireBuffers(&HostFormatKernels()) {}
  /// Memory of `kernels`, which must outlive the buffers.
  explicit WireBuffers(FormatKernels* kernels) : kernels_(kernels) {}
  /// `bytes` of uninitialised memory, 64-byte aligned, valid until the
  /// next Reset. Errors: the allocation's (kInternal, out of memory).
  Result<std::span<std::byte>> Allocate(uint64_t bytes);
  /// Makes every buffer reusable (keeps the memory).
  void Reset() { next_ = 0; }
  /// Bytes held.
  uint64_t held_bytes() const;

 private:
  FormatKernels* kernels_;
  std::vector<KernelBuffer> buffers_;
  size_t next_ = 0;
};

/// One rank's transform. Sender and receiver of a piece must agree on its
/// wire bytes (both derive them from the same plan and formats).
class ReshardTransform {
 public:
  virtual ~ReshardTransform() = default;
  /// True when pieces of destination parameter `dst_param` go through the
  /// transform (others are copied as they are).
  virtual bool ShouldTransform(uint32_t dst_param) const = 0;
  /// Sender: the blocks carrying `piece` of `op`, read from the source shard
  /// `src` (of piece.src_param): the shard itself, or converted bytes in the
  /// transform's scratch, valid until Finish. Errors: the conversion's
  /// (naming the tensor).
  virtual Result<std::vector<ConstBlock>> PrepareSend(const TransferOp& op,
                                                      const Piece& piece,
                                                      const std::byte* src) = 0;
  /// Receiver: where the wire bytes of `piece` land: the destination tensors
  /// themselves or the transform's staging.
  virtual Result<std::vector<MutBlock>> PrepareRecv(const TransferOp& op,
                                                    const Piece& piece) = 0;
  /// After every PrepareSend and PrepareRecv of one refit on this rank,
  /// before the copy service runs: the prepared send bytes (and local casts)
  /// are complete in memory (a device transform waits for its stream).
  /// Errors: the conversion's. Default: nothing to wait for.
  virtual Status Flush() { return OkStatus(); }
  /// Receiver, after the bytes arrived in `blocks` (PrepareRecv's).
  virtual Status FinalizeRecv(const TransferOp& op, const Piece& piece,
                              std::span<const MutBlock> blocks) = 0;
  /// After every piece of one refit on this rank: converts what needed the
  /// whole shard and releases the refit's scratch for the next one. Errors: a
  /// shard received incompletely or twice (kInternal, naming tensor and rank),
  /// the conversion's.
  virtual Status Finish() = 0;
  /// Node fan-out (ReshardPlan::forwards): where `piece` of a forward sits in
  /// this rank's destination tensors once Finish has run, in the destination
  /// format (its data, and for quantised formats the scales of its blocks).
  /// The leader sends these blocks and each follower receives into its own.
  /// Errors: kInternal when the rank holds no shard of the parameter or the
  /// parameter cannot be forwarded piecewise (quantised on receipt, which
  /// the planner keeps out of fan-out); this default: kUnimplemented.
  virtual Result<std::vector<MutBlock>> ForwardBlocks(const Piece& piece);
};

}  // namespace refit::exec

#endif  // REFIT_EXEC_TRANSFORM_H_
