// Tests' scratch folders: a fresh, uniquely named directory under the
// system's temporary directory, removed with everything in it when the
// object goes away (also the rendezvous folder of a test's socket group).
#ifndef REFIT_IO_TEST_TEMP_DIR_H_
#define REFIT_IO_TEST_TEMP_DIR_H_

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>

namespace refit::testing {

class TempDir {
 public:
  TempDir() {
    static std::atomic<uint64_t> counter{0};
    std::random_device random;
    path_ = std::filesystem::temp_directory_path() /
            ("refit_test_" + std::to_string(::getpid()) + "_" +
             std::to_string(counter++) + "_" + std::to_string(random()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  /// path() / name, as a string.
  std::string operator/(std::string_view name) const {
    return (path_ / name).string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace refit::testing

#endif  // REFIT_IO_TEST_TEMP_DIR_H_
