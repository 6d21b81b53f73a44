#include "refit/checkpoint/rank_file.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "refit/exec/session/tensor_binding.h"

namespace refit::exec {

std::vector<io::TensorToWrite> DstTensorsToWrite(const ModelSpec& dst_spec,
                                                 const FormatPlan& formats,
                                                 const DstTensors& dst,
                                                 const Layout& layout,
                                                 int layout_rank) {
  const std::vector<SideBinding::TensorBytes> tensors =
      NamedDstTensors(dst_spec, formats, dst, layout, layout_rank);
  std::vector<io::TensorToWrite> out;
  for (const SideBinding::TensorBytes& t : tensors) {
    io::TensorToWrite w{
        t.shape.name, t.shape.dtype, t.shape.shape, t.parts[0].first, {}};
    if (t.parts.size() > 1) {  // a stack or a fused tensor: its members
      w.data = nullptr;
      w.fill = [parts = t.parts](std::span<std::byte> out) {
        size_t at = 0;
        for (const auto& [data, bytes] : parts) {
          std::memcpy(out.data() + at, data, bytes);
          at += bytes;
        }
      };
    }
    out.push_back(std::move(w));
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
