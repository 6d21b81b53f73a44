// Benchmark scenarios: a model and a (source, destination) layout pair.
#ifndef REFIT_BENCH_SCENARIO_H_
#define REFIT_BENCH_SCENARIO_H_

#include <string>
#include <string_view>
#include <vector>

#include "refit/core/status.h"

namespace refit::bench {

struct Scenario {
  std::string
      suite;         ///< suite name, or "cli" for one given on the command line
  std::string name;  ///< "1".."7" in kimi-k2, "<model>/tp4" in models
  std::string model;  ///< folder under the configs directory, or a config path
  std::string src;    ///< source layout string
  std::string dst;    ///< destination layout string
  int src_world = 1;
  int dst_world = 1;
  bool collocated = true;  ///< else sources first, destinations after them
  std::string note;        ///< e.g. why a layout differs from the suite's ask
  /// The destination format of this scenario (a `--dst-dtype` value, e.g.
  /// "fp8-block" where the model ships FP8); "": the `--dst-dtype` flag's.
  std::string dst_dtype;
};

/// Names of the built-in suites: "refit-8gpu", "kimi-k2", "models".
std::vector<std::string> SuiteNames();

/// The scenarios of a built-in suite. "models" needs the configs directory
/// to list its models (every folder holding a config.json).
/// Errors: kInvalidArgument for an unknown suite (the known ones listed);
/// kNotFound when the configs directory has no config.
Result<std::vector<Scenario>> BuiltinSuite(std::string_view name,
                                           const std::string& configs_dir);

}  // namespace refit::bench

#endif  // REFIT_BENCH_SCENARIO_H_
