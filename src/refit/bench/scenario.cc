#include "refit/bench/scenario.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace refit::bench {

namespace {

// Kimi-K2 in two families of the same seven layout pairs (non-collocated
// ones put the source ranks first): rows 1-7 as the reference benchmark's
// flags set them, ETP 1 on both sides (every expert whole on its rank: no
// inference GPU holds that), and rows 8-14 as one would deploy them, with
// Megatron's default ETP = TP and the FP8 128x128 blocks Kimi-K2 ships in.
std::vector<Scenario> KimiSuite() {
  struct Row {
    int src_tp, src_ep, dst_tp, dst_ep;
    int sw, dw;
    bool collocated;
  };
  const Row rows[] = {
      {8, 8, 8, 4, 64, 32, false},    {16, 4, 8, 4, 64, 32, false},
      {16, 4, 16, 2, 64, 32, false},  {16, 4, 32, 2, 64, 64, false},
      {8, 8, 16, 4, 64, 64, false},   {16, 8, 8, 16, 128, 128, true},
      {32, 4, 16, 8, 128, 128, true},
  };
  const auto layout = [](int tp, int ep, int etp) {
    return "tp=" + std::to_string(tp) + ",ep=" + std::to_string(ep) +
           ",etp=" + std::to_string(etp);
  };
  std::vector<Scenario> out;
  int i = 0;
  for (bool deployable : {false, true}) {
    for (const Row& r : rows) {
      Scenario s{"kimi-k2",
                 std::to_string(++i),
                 "kimi-k2-instruct",
                 layout(r.src_tp, r.src_ep, deployable ? r.src_tp : 1),
                 layout(r.dst_tp, r.dst_ep, deployable ? r.dst_tp : 1),
                 r.sw,
                 r.dw,
                 r.collocated,
                 deployable ? "deployable: ETP = TP, FP8 128x128 destination"
                            : "seed-literal: ETP = 1 (the reference's flags)",
                 deployable ? "fp8-block" : ""};
      out.push_back(std::move(s));
    }
  }
  return out;
}

bool HasExperts(const std::filesystem::path& config) {
  std::ifstream in(config);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return false;
  if (j.contains("text_config")) j = j["text_config"];
  for (const char* key :
       {"num_experts", "num_local_experts", "n_routed_experts"}) {
    if (j.contains(key) && j[key].is_number_integer() &&
        j[key].get<int>() > 0) {
      return true;
    }
  }
  return false;
}

// The per-model configuration report: every config trained on 64 GPUs
// (tp=8,ep=8 with ETP = TP for MoE models, tp=8 for dense ones) refit into
// one inference replica of TP 4 or TP 8, non-collocated. MoE models have two
// expert placements per TP (EP = 1: experts split like the dense layers,
// ETP = TP; EP = TP: every expert whole on one rank, as vLLM's expert
// parallelism places them); every candidate in BF16 and in FP8 128x128
// blocks.
Result<std::vector<Scenario>> ModelsSuite(const std::string& configs_dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> models;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(configs_dir, ec)) {
    if (fs::exists(e.path() / "config.json")) {
      models.push_back(e.path().filename().string());
    }
  }
  if (models.empty()) {
    return NotFound("no model configs (*/config.json) under " + configs_dir);
  }
  std::sort(models.begin(), models.end());
  std::vector<Scenario> out;
  for (const std::string& m : models) {
    const bool moe = HasExperts(fs::path(configs_dir) / m / "config.json");
    const char* src = moe ? "tp=8,ep=8,etp=8" : "tp=8";
    for (int tp : {4, 8}) {
      const std::string t = std::to_string(tp);
      std::vector<std::pair<std::string, std::string>> placements;
      if (moe) {
        placements = {
            {"tp" + t + "-ep1", "tp=" + t + ",ep=1,etp=" + t},
            {"tp" + t + "-ep" + t, "tp=" + t + ",ep=" + t + ",etp=1"}};
      } else {
        placements = {{"tp" + t, "tp=" + t}};
      }
      for (const auto& [name, dst] : placements) {
        for (const char* dtype : {"", "fp8-block"}) {
          const std::string suffix = *dtype ? "-fp8" : "-bf16";
          out.push_back({"models", m + "/" + name + suffix, m, src, dst, 64, tp,
                         false, "", dtype});
        }
      }
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> SuiteNames() {
  return {"refit-8gpu", "kimi-k2", "models"};
}

Result<std::vector<Scenario>> BuiltinSuite(std::string_view name,
                                           const std::string& configs_dir) {
  if (name == "refit-8gpu") {
    return std::vector<Scenario>{{"refit-8gpu", "1", "qwen3-30b-a3b",
                                  "tp=4,ep=2,etp=1", "tp=2,ep=4,etp=1", 8, 8,
                                  true, ""}};
  }
  if (name == "kimi-k2") return KimiSuite();
  if (name == "models") return ModelsSuite(configs_dir);
  return InvalidArgument("unknown suite '" + std::string(name) +
                         "' (suites: refit-8gpu, kimi-k2, models)");
}

}  // namespace refit::bench
