// The expected destination of a converting refit, computed straight from the
// checkpoint: each destination shard sliced from the HF tensors (FillShard),
// then cast or quantised whole. Block FP8 quantises the shard widened to the
// global blocks it touches, so the scales are those of the whole tensor
// (layouts.md §4.1). Used to check refits bit for bit.
#ifndef REFIT_VERIFY_DST_REFERENCE_H_
#define REFIT_VERIFY_DST_REFERENCE_H_

#include <cstddef>
#include <vector>

#include "refit/core/format/dst_format.h"
#include "refit/checkpoint/checkpoint_shards.h"
#include "refit/exec/dst_tensors.h"

namespace refit::exec {

/// The expected data bytes (g.LocalElements() elements of f.dtype) and scale
/// bytes (ScaleLayoutOf(p, f, g).bytes) of destination shard `g` of
/// parameter `param` (`p` its source spec) from the checkpoint. A source
/// kept as block FP8 is expected as stored: its FP8 bytes and the
/// checkpoint's scales of the blocks it touches (FillShardScales).
/// Errors: the quantiser's (a non-finite weight, naming the tensor).
Status ExpectedShard(const ParamSpec& p, const ParamFormat& f,
                     const BoundCheckpoint& ckpt, size_t param,
                     const ShardGeometry& g, std::vector<std::byte>& data,
                     std::vector<std::byte>& scales);

/// Sets wrong[p] for every shard p of `dst` whose data or scales differ from
/// ExpectedShard (an error computing it also marks it wrong).
void MarkWrongDstShards(const ModelSpec& spec, const FormatPlan& formats,
                        const BoundCheckpoint& ckpt, const DstTensors& dst,
                        std::vector<bool>& wrong);

}  // namespace refit::exec

#endif  // REFIT_VERIFY_DST_REFERENCE_H_
