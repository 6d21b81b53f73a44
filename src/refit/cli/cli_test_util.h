// Helpers of the end-to-end CLI tests: temp dirs, running the built binary
// (REFIT_BINARY) as a child process, and reading its safetensors output
// independently of the product's reader.
#ifndef REFIT_CLI_CLI_TEST_UTIL_H_
#define REFIT_CLI_CLI_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "refit/io/test_temp_dir.h"

namespace refit::cli::testing {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// ---------------------------------------------------------------------------
// Files and processes.

using ::refit::testing::TempDir;

inline std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline std::string ShellQuote(std::string_view s) {
  std::string quoted = "'";
  for (char c : s) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

inline std::vector<std::string> Words(const std::string& line) {
  std::vector<std::string> words;
  std::istringstream in(line);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// What one run of the binary did.
struct CliResult {
  std::string command;
  int exit_code = -1;  // -1: did not exit normally
  std::string out;
  std::string err;
};

inline std::ostream& operator<<(std::ostream& os, const CliResult& r) {
  return os << "\n$ " << r.command << "\nexit " << r.exit_code
            << "\n--- stdout ---\n"
            << r.out << "--- stderr ---\n"
            << r.err;
}

// Runs `refit <args...>`, capturing stdout, stderr and the exit status.
inline CliResult RunCli(const std::vector<std::string>& args) {
  const TempDir io;
  const std::string out = io / "stdout", err = io / "stderr";
  CliResult result;
  result.command = REFIT_BINARY;
  for (const std::string& arg : args) {
    result.command.append(" ").append(ShellQuote(arg));
  }
  std::string shell = result.command;
  shell.append(" </dev/null >").append(ShellQuote(out));
  shell.append(" 2>").append(ShellQuote(err));
  const int status = std::system(shell.c_str());
  if (status != -1 && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  result.out = ReadFile(out);
  result.err = ReadFile(err);
  return result;
}

// Bad input: exit status 2 and exactly one line on stderr, "refit: ...",
// containing every one of `needles`.
inline ::testing::AssertionResult IsInputError(
    const CliResult& r, const std::vector<std::string>& needles) {
  const std::vector<std::string> lines = Lines(r.err);
  if (r.exit_code != 2) {
    return ::testing::AssertionFailure() << "exit status is not 2" << r;
  }
  if (lines.size() != 1 || !r.err.ends_with("\n")) {
    return ::testing::AssertionFailure()
           << "stderr is not exactly one line" << r;
  }
  if (!lines[0].starts_with("refit: ")) {
    return ::testing::AssertionFailure()
           << "stderr does not start with 'refit: '" << r;
  }
  for (const std::string& needle : needles) {
    if (lines[0].find(needle) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "stderr does not name '" << needle << "'" << r;
    }
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------
// Safetensors files, read independently of the product's reader.

struct SafetensorsContent {
  Json header;  // null when the file is not a well-formed safetensors file
  std::string bytes;
  uint64_t data_start = 0;

  bool Has(const std::string& name) const {
    return header.is_object() && header.contains(name);
  }
  // The data bytes of tensor `name` (empty when absent).
  std::string_view Data(const std::string& name) const {
    if (!Has(name)) return {};
    const uint64_t begin = header[name]["data_offsets"][0].get<uint64_t>();
    const uint64_t end = header[name]["data_offsets"][1].get<uint64_t>();
    if (data_start + end > bytes.size() || begin > end) return {};
    return std::string_view(bytes).substr(data_start + begin, end - begin);
  }
  std::vector<int64_t> Shape(const std::string& name) const {
    return Has(name) ? header[name]["shape"].get<std::vector<int64_t>>()
                     : std::vector<int64_t>{};
  }
  std::string DType(const std::string& name) const {
    return Has(name) ? header[name]["dtype"].get<std::string>() : "";
  }
  // Tensor names, sorted, without __metadata__.
  std::set<std::string> Names() const {
    std::set<std::string> names;
    if (!header.is_object()) return names;
    for (const auto& [key, value] : header.items()) {
      if (key != "__metadata__") names.insert(key);
    }
    return names;
  }
};

inline SafetensorsContent ReadSafetensors(const fs::path& path) {
  SafetensorsContent st;
  st.bytes = ReadFile(path);
  if (st.bytes.size() < 8) return st;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) {
    n = (n << 8) | static_cast<unsigned char>(st.bytes[i]);
  }
  if (n > st.bytes.size() - 8) return st;
  st.header = Json::parse(st.bytes.substr(8, n), nullptr, false);
  if (st.header.is_discarded() || !st.header.is_object()) st.header = Json();
  st.data_start = 8 + n;
  return st;
}

// The data row under the "#wrong" header of the `refit run` table.
inline std::vector<std::string> TableRow(const std::string& out) {
  const std::vector<std::string> lines = Lines(out);
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    if (lines[i].starts_with("#") &&
        lines[i].find("#wrong") != std::string::npos) {
      return Words(lines[i + 1]);
    }
  }
  return {};
}

}  // namespace refit::cli::testing

#endif  // REFIT_CLI_CLI_TEST_UTIL_H_
