#include "refit/bench/gpu_memory.h"

#include <algorithm>
#include <array>
#include <set>
#include <string>

#include "refit/exec/dst_tensors.h"
#include "refit/exec/format_transform.h"

namespace refit::bench {

Result<double> GpuHbmGb(std::string_view name) {
  if (name == "h100") return 80.0;
  if (name == "h200") return 141.0;
  if (name == "b200") return 192.0;
  return InvalidArgument("--gpu: unknown GPU '" + std::string(name) +
                         "' (h100, h200, b200)");
}

namespace {

// The largest fn(shards of rank r) over the ranks of `layout`, each class of
// ranks with equal (tp, pp, ep, etp) coordinates (they hold the same shards)
// built once, as geometry only.
template <typename Fn>
uint64_t MaxOverRankClasses(const ModelSpec& spec, const FormatPlan& formats,
                            const Layout& layout, Fn&& fn) {
  std::set<std::array<int, 4>> seen;
  uint64_t most = 0;
  for (int r = 0; r < layout.world_size(); ++r) {
    if (!seen.insert({layout.TpRank(r), layout.PpRank(r), layout.EpRank(r),
                      layout.EtpRank(r)})
             .second) {
      continue;
    }
    most = std::max(most,
                    fn(exec::DstTensors::Geometry(spec, formats, layout, r)));
  }
  return most;
}

}  // namespace

uint64_t MaxRankWeightBytes(const ModelSpec& spec, const FormatPlan& formats,
                            const Layout& layout) {
  return MaxOverRankClasses(spec, formats, layout,
                            [](const exec::DstTensors& t) {
                              uint64_t bytes = t.data().total_bytes();
                              for (uint32_t p : t.data().params())
                                bytes += t.scale_layout(p).bytes;
                              return bytes;
                            });
}

uint64_t ScenarioMemory::max_gpu_bytes() const {
  const uint64_t dst = dst_weight_bytes + dst_recv_staging_bytes;
  const uint64_t weights =
      collocated ? src_weight_bytes + dst : std::max(src_weight_bytes, dst);
  return weights + staging_bytes;
}

uint64_t ScenarioMemory::dst_gpu_bytes() const {
  return dst_weight_bytes + dst_recv_staging_bytes +
         (collocated ? src_weight_bytes : 0) + staging_bytes;
}

namespace {

// The most receive staging one rank of `layout` holds.
uint64_t MaxRankReceiveStagingBytes(const ModelSpec& spec,
                                    const FormatPlan& formats,
                                    const Layout& layout) {
  return MaxOverRankClasses(DestinationSpec(spec, formats), formats, layout,
                            [&](const exec::DstTensors& t) {
                              return exec::FormatTransform::ReceiveStagingBytes(
                                  spec, formats, t);
                            });
}

}  // namespace

ScenarioMemory ComputeScenarioMemory(const ModelSpec& spec,
                                     const FormatPlan& formats,
                                     const RefitTopology& topo,
                                     uint64_t staging_bytes) {
  ScenarioMemory m;
  m.src_weight_bytes =
      MaxRankWeightBytes(spec, IdentityFormats(spec), topo.src);
  m.dst_weight_bytes =
      MaxRankWeightBytes(DestinationSpec(spec, formats), formats, topo.dst);
  m.dst_recv_staging_bytes =
      MaxRankReceiveStagingBytes(spec, formats, topo.dst);
  m.staging_bytes = staging_bytes;
  m.collocated = topo.collocated();
  return m;
}

}  // namespace refit::bench
