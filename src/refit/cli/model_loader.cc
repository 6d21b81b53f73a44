#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "refit/cli/commands.h"

namespace refit::cli {

Result<std::string> ReadConfigText(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path file = path;
  if (fs::is_directory(file)) file /= "config.json";
  std::ifstream in(file);
  if (!in) return NotFound("cannot read " + file.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<ModelSpec> LoadModelSpec(const std::string& path) {
  REFIT_ASSIGN_OR_RETURN(std::string text, ReadConfigText(path));
  Result<ModelSpec> spec = ModelSpecFromConfigJson(text);
  if (!spec.ok()) {
    return Status(spec.status().code(), path + ": " + spec.status().message());
  }
  return spec;
}

int Fail(const Status& status) {
  std::cerr << "refit: " << status.message() << "\n";
  return 2;
}

}  // namespace refit::cli
