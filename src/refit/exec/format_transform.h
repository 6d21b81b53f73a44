// The transform that turns source shards into the destination formats of a
// FormatPlan (dst_format.h): casts, block FP8 and MXFP8, each on the side the
// plan resolved. Sender-side: each piece is converted on its own (whole
// blocks only) and the receiver places data and scales straight into its
// destination tensors. Receiver-side: source bytes are accumulated into a
// staging copy of the shard (widened to whole blocks where a TP cut goes
// through one) and quantised once when every byte has arrived
// (megatron_resharding.md §3.2, §3.3).
#ifndef REFIT_EXEC_FORMAT_TRANSFORM_H_
#define REFIT_EXEC_FORMAT_TRANSFORM_H_

#include <cstdint>
#include <vector>

#include "refit/core/format/dst_format.h"
#include "refit/exec/dst_tensors.h"
#include "refit/exec/format_kernels.h"
#include "refit/exec/transform.h"

namespace refit::exec {

/// A rank's source shards and the scales of those kept as block FP8.
struct SourceScales {
  const ShardArena* shards = nullptr;
  ShardScales scales;  ///< ShardScales::Side::kSource of `shards`
};

class FormatTransform final : public ReshardTransform {
 public:
  /// `spec` is the source spec; `dst` the rank's destination tensors, or
  /// nullptr on a rank that holds none (a pure sender); `src` the scales of
  /// its source shards kept as block FP8 (needed when formats.kept > 0 and
  /// the rank sends). All must outlive the transform.
  FormatTransform(const ModelSpec& spec, const FormatPlan& formats,
                  DstTensors* dst, int rank, const SourceScales* src = nullptr);

  /// Converts on `kind` memory from now on: the rank's tensors, scratch and
  /// receive staging are all of that kind (host: the CPU kernels; kCuda:
  /// refit::cuda's device kernels, staging moved to the device). The
  /// transform starts on host memory. Errors: CudaFormatKernels' (no CUDA in
  /// this build, no device), the staging allocation's; kUnimplemented for
  /// another kind.
  Status UseMemory(MemoryKind kind);
  /// The next conversion starts after the work queued so far on the
  /// caller's CUDA stream (FormatKernels::OrderAfter).
  Status OrderAfter(uintptr_t cuda_stream) {
    return kernels_->OrderAfter(cuda_stream);
  }

  bool ShouldTransform(uint32_t dst_param) const override;
  Result<std::vector<ConstBlock>> PrepareSend(const TransferOp& op,
                                              const Piece& piece,
                                              const std::byte* src) override;
  Result<std::vector<MutBlock>> PrepareRecv(const TransferOp& op,
                                            const Piece& piece) override;
  Status FinalizeRecv(const TransferOp& op, const Piece& piece,
                      std::span<const MutBlock> blocks) override;
  Status Flush() override { return kernels_->Sync(); }
  Status Finish() override;
  Result<std::vector<MutBlock>> ForwardBlocks(const Piece& piece) override;

  /// Bytes of receive staging held (whole shards of receiver-side
  /// quantised parameters) plus send scratch.
  uint64_t staging_bytes() const;

  /// The receive staging a transform over `dst` holds for the life of its
  /// plan: every shard quantised on the receiving side, widened to whole
  /// blocks, in its source dtype, in bytes. `dst` may be geometry only
  /// (DstTensors::Geometry).
  static uint64_t ReceiveStagingBytes(const ModelSpec& spec,
                                      const FormatPlan& formats,
                                      const DstTensors& dst);

 private:
  struct Staging {
    ShardGeometry geometry;  // the (widened) receive layout
    uint64_t size = 0;       // bytes of the layout in the source dtype
    KernelBuffer bytes;
    uint64_t received = 0;
  };

  Status AllocateStaging();
  Status CastRuns(const std::byte* src, uint64_t run, uint64_t nruns,
                  uint64_t stride, DType from, std::byte* dst,
                  uint64_t dst_stride, DType to);
  Status QuantizeStaged(uint32_t p);

  Result<std::vector<ConstBlock>> Quantize(const Piece& piece,
                                           const std::byte* src);
  std::vector<MutBlock> PlaceQuantized(const Piece& piece) const;
  Status CastLocal(const Piece& piece, const std::byte* src);
  Result<std::vector<ConstBlock>> SendKept(const Piece& piece,
                                           const std::byte* src) const;

  const ModelSpec& spec_;
  const FormatPlan& formats_;
  DstTensors* dst_;
  const SourceScales* src_;
  int rank_;
  // The kernels first: the buffers below are freed by them.
  std::unique_ptr<FormatKernels> device_kernels_;
  FormatKernels* kernels_ = &HostFormatKernels();
  WireBuffers scratch_;
  WireBuffers shard_scratch_;     // one staged shard's quantisation at a time
  std::vector<Staging> staging_;  // per parameter, receiver-side quantised
};

}  // namespace refit::exec

#endif  // REFIT_EXEC_FORMAT_TRANSFORM_H_
