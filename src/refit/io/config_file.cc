#include "refit/io/config_file.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace refit::io {

Result<std::string> ReadConfigText(const std::string& path) {
  std::filesystem::path file = path;
  if (std::filesystem::is_directory(file)) file /= "config.json";
  std::ifstream in(file);
  if (!in) return NotFound("cannot read " + file.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace refit::io
