#include <fmt/core.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "refit/bench/scaled_config.h"
#include "refit/checkpoint/synthetic.h"
#include "refit/cli/commands.h"
#include "refit/io/config_file.h"

namespace refit::cli {

namespace {

struct SynthOptions {
  std::string config;
  std::string out;
  int layers = 0;
  std::string dtype;
  uint64_t seed = 1;
  int scale = 0;
  int scale_multiple = 1;
  int64_t fp8_block_size = 128;
  bool stacked_experts = false;
  bool mtp = false;  ///< also write the MTP layers' tensors

  bool fp8() const { return dtype == "fp8-block"; }
};

// The config text with the requested overrides applied.
Result<std::string> EditConfig(const SynthOptions& o) {
  REFIT_ASSIGN_OR_RETURN(std::string text, io::ReadConfigText(o.config));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return InvalidArgument(o.config + ": config.json is not a JSON object");
  }
  nlohmann::json& cfg = j.contains("text_config") ? j["text_config"] : j;
  if (o.layers > 0) cfg["num_hidden_layers"] = o.layers;
  if (o.fp8()) {
    // Block FP8 (DeepSeek-V3 / Kimi-K2, layouts.md §4.1): BF16 model, FP8
    // linear weights with 128x128 (or --fp8-block-size) block scales.
    cfg["torch_dtype"] = "bfloat16";
    j["quantization_config"] = {
        {"activation_scheme", "dynamic"},
        {"fmt", "e4m3"},
        {"quant_method", "fp8"},
        {"weight_block_size", {o.fp8_block_size, o.fp8_block_size}}};
  } else if (!o.dtype.empty()) {
    cfg["torch_dtype"] = o.dtype;
  }
  if (o.scale > 1) return ScaleConfigJson(j.dump(), o.scale, o.scale_multiple);
  return j.dump(2) + "\n";
}

int RunSynth(const SynthOptions& o) {
  Result<std::string> text = EditConfig(o);
  if (!text.ok()) return Fail(text.status());
  Result<ModelSpec> spec =
      ModelSpecFromConfigJson(*text, ModelSpecOptions{o.mtp});
  if (!spec.ok()) return Fail(spec.status());
  exec::SyntheticOptions options;
  options.seed = o.seed;
  options.fp8_block = o.fp8();
  options.stacked_experts = o.stacked_experts;
  Status st = exec::WriteSyntheticCheckpoint(*spec, *text, o.out, options);
  if (!st.ok()) return Fail(st);
  fmt::print("wrote {}/model.safetensors: {} ({} layers, {} params)\n", o.out,
             spec->architecture, spec->num_layers, spec->TotalParams());
  return 0;
}

}  // namespace

Command AddSynthCommand(CLI::App& app) {
  auto o = std::make_shared<SynthOptions>();
  CLI::App* cmd = app.add_subcommand(
      "synth", "Write a synthetic checkpoint of any supported config");
  cmd->add_option("--config", o->config, "config.json or a directory with one")
      ->required();
  cmd->add_option("--out", o->out, "output directory")->required();
  cmd->add_option("--layers", o->layers, "override num_hidden_layers");
  cmd->add_option("--dtype", o->dtype,
                  "override torch_dtype (bfloat16, float16, float32), or "
                  "fp8-block: BF16 with linear weights stored as block FP8 "
                  "(F8_E4M3 + F32 weight_scale_inv, DeepSeek-V3 style)");
  cmd->add_option("--fp8-block-size", o->fp8_block_size,
                  "with --dtype fp8-block: block extent in rows and columns")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_flag(
      "--mtp", o->mtp,
      "also write the multi-token prediction layers "
      "(num_nextn_predict_layers; DeepSeek-V3-style models, GLM-4.x MoE)");
  cmd->add_flag("--stacked-experts", o->stacked_experts,
                "store routed experts stacked as transformers v5 does "
                "(experts.gate_up_proj [E, 2I, H], experts.down_proj "
                "[E, H, I]; with --dtype fp8-block their scales too, "
                "experts.gate_up_proj_scale_inv [E, 2I/B, H/B])");
  cmd->add_option("--scale", o->scale,
                  "divide widths by up to K, as refit bench --scale does")
      ->check(Positive());
  cmd->add_option("--scale-multiple", o->scale_multiple,
                  "with --scale: FFN widths stay multiples of this (the lcm "
                  "of the TP/ETP sizes you will use)")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--seed", o->seed, "seed of the tensor bytes")
      ->capture_default_str();
  return [o] { return RunSynth(*o); };
}

}  // namespace refit::cli
