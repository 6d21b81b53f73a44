#include <iostream>

#include "refit/cli/commands.h"
#include "refit/io/config_file.h"

namespace refit::cli {

Result<ModelSpec> LoadModelSpec(const std::string& path,
                                const ModelSpecOptions& options) {
  REFIT_ASSIGN_OR_RETURN(std::string text, io::ReadConfigText(path));
  Result<ModelSpec> spec = ModelSpecFromConfigJson(text, options);
  if (!spec.ok()) {
    return Status(spec.status().code(), path + ": " + spec.status().message());
  }
  return spec;
}

CLI::Validator Positive(bool allow_zero) {
  return CLI::Validator(
      [allow_zero](std::string& value) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(value, v) || v < 0 ||
            (v == 0 && !allow_zero)) {
          return "'" + value +
                 (allow_zero ? "' is not a number >= 0"
                             : "' is not a number > 0");
        }
        return "";
      },
      allow_zero ? "NUMBER>=0" : "NUMBER>0");
}

int Fail(const Status& status) {
  std::string line = status.message();
  for (size_t at = line.find('\n'); at != std::string::npos;
       at = line.find('\n', at)) {
    line.replace(at, 1, "\\n");
  }
  // One write, so lines of processes sharing stderr do not interleave.
  std::cerr << ("refit: " + line + "\n");
  return 2;
}

}  // namespace refit::cli
