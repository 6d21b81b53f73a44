// libFuzzer target: the text of a Hugging Face config.json, read by
// ModelSpecFromConfigJson. Any input may be rejected; an accepted spec is
// passed to what callers do with one next (totals, the HF name index, dtype
// binding) and checked for the invariants model_spec.h states.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "refit/core/model_spec.h"

namespace {

void Check(bool ok, const refit::ParamSpec& p, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "model_spec_fuzz: %s: %s\n", p.name.c_str(), what);
  std::abort();
}

// Each parameter: positive dims, HF rows summing to dim 0, groups dividing
// every HF tensor's rows.
void CheckParams(const refit::ModelSpec& spec) {
  for (const refit::ParamSpec& p : spec.params) {
    Check(!p.shape.empty() && p.shape.size() <= 2, p, "rank");
    for (int64_t d : p.shape) Check(d > 0, p, "non-positive dim");
    Check(p.hf_names.size() == p.hf_rows.size() && !p.hf_names.empty(), p,
          "hf_names / hf_rows");
    Check(p.interleave_groups > 0, p, "interleave_groups");
    int64_t rows = 0;
    for (int64_t r : p.hf_rows) {
      Check(r > 0 && r % p.interleave_groups == 0, p, "hf_rows");
      rows += r;
    }
    Check(rows == p.shape[0], p, "hf_rows sum != dim 0");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  refit::Result<refit::ModelSpec> spec = refit::ModelSpecFromConfigJson(text);
  if (!spec.ok()) return 0;
  CheckParams(*spec);
  volatile int64_t total = spec->TotalParams();
  (void)total;
  volatile size_t names = refit::HfNameIndex(*spec).size();
  (void)names;
  refit::BindCheckpointDType(*spec, refit::DType::kF16);
  return 0;
}
