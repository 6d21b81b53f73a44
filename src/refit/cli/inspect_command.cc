#include <fmt/core.h>

#include <filesystem>
#include <memory>

#include "refit/cli/commands.h"
#include "refit/io/safetensors.h"

namespace refit::cli {

namespace {

std::string Join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::vector<std::string> dims;
  for (int64_t d : shape) dims.push_back(std::to_string(d));
  return "[" + Join(dims, ",") + "]";
}

// A config that names no dtype takes the checkpoint's, when there is one.
void AdoptCheckpointDType(const std::string& path, ModelSpec& spec) {
  if (spec.dtype_from_config || spec.params.empty() ||
      !std::filesystem::is_directory(path)) {
    return;
  }
  Result<io::Checkpoint> ckpt = io::Checkpoint::Open(path);
  if (!ckpt.ok()) return;  // a config-only directory
  const io::TensorRef* t = ckpt->Find(spec.params[0].hf_names[0]);
  if (t != nullptr) BindCheckpointDType(spec, t->info->dtype);
}

int RunInspect(const std::string& path) {
  Result<ModelSpec> spec = LoadModelSpec(path);
  if (!spec.ok()) return Fail(spec.status());
  AdoptCheckpointDType(path, *spec);
  fmt::print("# model {} ({}), {} layers, {} experts, {} tensors\n",
             spec->architecture, spec->model_type, spec->num_layers,
             spec->num_experts, spec->params.size());
  fmt::print("# {:<62} {:<18} {:<5} {:<12} {:<6} {}\n", "megatron_name",
             "shape", "dtype", "split", "group", "hf_names");
  for (const ParamSpec& p : spec->params) {
    std::string split = std::string(ShardKindName(p.shard));
    if (p.data_id != &p - spec->params.data()) split += "(tied)";
    fmt::print("{:<64} {:<18} {:<5} {:<12} {:<6} {}\n", p.name,
               ShapeText(p.shape), DTypeName(p.dtype), split,
               p.tp_group == TpGroup::kExpert ? "etp" : "tp",
               Join(p.hf_names, "+"));
  }
  fmt::print("total_params: {}\n", spec->TotalParams());
  return 0;
}

}  // namespace

Command AddInspectCommand(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "inspect",
      "Print the Megatron tensor table of a checkpoint or config.json");
  cmd->add_option("path", *path, "checkpoint directory or config.json")
      ->required();
  return [path] { return RunInspect(*path); };
}

}  // namespace refit::cli
