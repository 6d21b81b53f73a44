#include "refit/checkpoint/rank_file.h"

#include <cstdio>
#include <filesystem>
#include <map>

namespace refit::exec {

std::vector<io::TensorToWrite> DstTensorsToWrite(const ModelSpec& dst_spec,
                                                 const FormatPlan& formats,
                                                 const DstTensors& dst,
                                                 const Layout& layout,
                                                 int layout_rank) {
  std::vector<io::TensorToWrite> out;
  const ShardArena& arena = dst.data();
  for (uint32_t p : arena.params()) {
    const ParamSpec& ps = dst_spec.params[p];
    const std::string name = LocalName(ps, layout, layout_rank);
    out.push_back(
        {name, ps.dtype, arena.geometry(p).local_shape, arena.data(p), {}});
    const ParamFormat& f = formats.params[p];
    if (f.kind == FormatKind::kPlain) continue;
    const ScaleLayout& sl = dst.scale_layout(p);
    std::vector<int64_t> shape = {sl.rows, sl.cols};
    if (f.swizzled) shape = {static_cast<int64_t>(sl.bytes)};
    out.push_back(
        {name + (f.kind == FormatKind::kFp8Block ? "_scale_inv" : "_scale"),
         sl.dtype,
         shape,
         dst.scales(p),
         {}});
  }
  return out;
}

Result<std::string> SaveRankFile(const std::string& dir, int global_rank,
                                 const ModelSpec& dst_spec,
                                 const FormatPlan& formats,
                                 const DstTensors& dst, const Layout& layout,
                                 int layout_rank) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return IoError("cannot create " + dir + ": " + ec.message());
  const std::vector<io::TensorToWrite> tensors =
      DstTensorsToWrite(dst_spec, formats, dst, layout, layout_rank);
  const int stage = layout.PpRank(layout_rank);
  const std::map<std::string, std::string> meta = {
      {"format", "pt"},
      {"layout", layout.config().ToString()},
      {"rank", std::to_string(layout_rank)},
      {"world_size", std::to_string(layout.world_size())},
      {"layer_offset", std::to_string(layout.StageFirstLayer(stage))}};
  char name[32];
  std::snprintf(name, sizeof(name), "rank-%05d.safetensors", global_rank);
  const std::string path = (std::filesystem::path(dir) / name).string();
  REFIT_RETURN_IF_ERROR(io::WriteSafetensors(path, tensors, meta));
  return path;
}

}  // namespace refit::exec
