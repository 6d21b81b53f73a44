// CudaIpcMemory on a device (CTest label gpu; each case skips with "no CUDA
// device" without one). In one process: Export of a cudaMalloc buffer and
// its offsets, the refusal of host memory, Move. Across processes: this
// binary spawns itself as a child that opens the parent's handle and writes
// through it (CUDA maps handles exported by other processes only).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "refit/cuda/cuda_check.h"
#include "refit/transport/cuda_ipc/ipc_memory.h"

extern char** environ;

namespace refit::exec {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kBytes = 1 << 20;
constexpr const char* kChildHandle = "REFIT_IPC_CHILD_HANDLE";
constexpr const char* kChildOffset = "REFIT_IPC_CHILD_OFFSET";

std::byte Pattern(uint64_t i) { return static_cast<std::byte>(i * 7 + 3); }

// 64 runs of 64 bytes, 128 bytes apart: what the child writes.
constexpr uint64_t kRun = 64, kRuns = 64, kStride = 128;

std::string Hex(const IpcHandle& h) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (std::byte b : h.bytes) {
    s += digits[static_cast<int>(b) >> 4];
    s += digits[static_cast<int>(b) & 15];
  }
  return s;
}

IpcHandle FromHex(const std::string& s) {
  IpcHandle h;
  for (size_t i = 0; i < IpcHandle::kBytes && 2 * i + 1 < s.size(); ++i) {
    h.bytes[i] =
        static_cast<std::byte>(std::stoi(s.substr(2 * i, 2), nullptr, 16));
  }
  return h;
}

class CudaIpcMemoryGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
    Result<std::unique_ptr<IpcMemory>> memory = CudaIpcMemory();
    ASSERT_TRUE(memory.ok()) << memory.status().ToString();
    memory_ = std::move(memory).value();
    ASSERT_EQ(cudaMalloc(&device_, kBytes), cudaSuccess);
    ASSERT_EQ(cudaMemset(device_, 0, kBytes), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // before a child writes
  }
  void TearDown() override {
    if (device_ != nullptr) cudaFree(device_);
  }
  std::byte* device() { return static_cast<std::byte*>(device_); }

  std::unique_ptr<IpcMemory> memory_;
  void* device_ = nullptr;
};

TEST_F(CudaIpcMemoryGpu, ExportNamesTheAllocationAndTheOffset) {
  Result<IpcExport> base = memory_->Export(device());
  Result<IpcExport> inner = memory_->Export(device() + 4096);
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  ASSERT_TRUE(inner.ok()) << inner.status().ToString();
  EXPECT_EQ(base->offset, 0u);
  EXPECT_EQ(inner->offset, 4096u);
  EXPECT_GE(base->allocation_bytes, kBytes);
  // One handle per allocation, whichever pointer in it is exported.
  EXPECT_EQ(base->handle, inner->handle);

  std::vector<std::byte> host(64);
  Result<IpcExport> refused = memory_->Export(host.data());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("host memory"));

  // Not something the service does (self-sends are local Moves); recorded
  // for the documentation of IpcMemory::Open.
  Result<std::byte*> own = memory_->Open(base->handle);
  std::cout << "note: opening this process's own handle: "
            << (own.ok() ? std::string("succeeded") : own.status().ToString())
            << "\n";
  if (own.ok()) {
    EXPECT_TRUE(memory_->CloseMapping(*own).ok());
  }
}

// A reallocation at the same address is a new allocation: the service's
// reuse of an unchanged manifest keys on these ids.
TEST_F(CudaIpcMemoryGpu, AllocationIdsTellReallocationsApart) {
  const uint64_t id = memory_->AllocationId(device());
  EXPECT_NE(id, 0u);
  EXPECT_EQ(memory_->AllocationId(device() + 4096), id);
  void* again = nullptr;
  ASSERT_EQ(cudaFree(device_), cudaSuccess);
  device_ = nullptr;
  ASSERT_EQ(cudaMalloc(&again, kBytes), cudaSuccess);
  device_ = again;
  EXPECT_NE(memory_->AllocationId(device()), id)
      << "same address again: " << (again == device_);
}

TEST_F(CudaIpcMemoryGpu, MoveScattersIntoDeviceMemory) {
  std::vector<std::byte> in(kRun * kRuns), out(kRuns * kStride);
  for (uint64_t i = 0; i < in.size(); ++i) in[i] = Pattern(i);
  const ConstBlock from{in.data(), in.size(), 1, in.size()};
  const MutBlock to{device() + 512, kRun, kRuns, kStride};
  ASSERT_TRUE(memory_->Move({&from, 1}, {&to, 1}).ok());
  const ConstBlock back{device() + 512, out.size(), 1, out.size()};
  const MutBlock host{out.data(), out.size(), 1, out.size()};
  ASSERT_TRUE(memory_->Move({&back, 1}, {&host, 1}).ok());
  for (uint64_t r = 0; r < kRuns; ++r) {
    for (uint64_t k = 0; k < kRun; ++k) {
      ASSERT_EQ(out[r * kStride + k], Pattern(r * kRun + k)) << r << " " << k;
    }
  }
}

// The child's half of AnotherProcessWritesThroughTheHandle: opens the
// handle in its environment and writes the pattern at the offset.
TEST_F(CudaIpcMemoryGpu, ChildOfAnotherProcessWritesThroughTheHandle) {
  const char* handle = std::getenv(kChildHandle);
  const char* offset = std::getenv(kChildOffset);
  if (handle == nullptr || offset == nullptr) {
    GTEST_SKIP() << "runs as the child of AnotherProcessWritesThroughTheHandle";
  }
  Result<std::byte*> base = memory_->Open(FromHex(handle));
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  std::vector<std::byte> in(kRun * kRuns);
  for (uint64_t i = 0; i < in.size(); ++i) in[i] = Pattern(i);
  const ConstBlock from{in.data(), in.size(), 1, in.size()};
  const MutBlock to{*base + std::stoull(offset), kRun, kRuns, kStride};
  EXPECT_TRUE(memory_->Move({&from, 1}, {&to, 1}).ok());
  EXPECT_TRUE(memory_->CloseMapping(*base).ok());
}

TEST_F(CudaIpcMemoryGpu, AnotherProcessWritesThroughTheHandle) {
  if (std::getenv(kChildHandle) != nullptr) GTEST_SKIP() << "in the child";
  Result<IpcExport> e = memory_->Export(device() + 256);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  std::string exe(4096, '\0');
  const ssize_t n = readlink("/proc/self/exe", exe.data(), exe.size() - 1);
  ASSERT_GT(n, 0);
  exe.resize(n);
  std::string filter =
      "--gtest_filter=CudaIpcMemoryGpu."
      "ChildOfAnotherProcessWritesThroughTheHandle";
  std::vector<std::string> env_text = {
      std::string(kChildHandle) + "=" + Hex(e->handle),
      std::string(kChildOffset) + "=" + std::to_string(e->offset)};
  std::vector<char*> env;  // without GTEST_* (sharding, output files)
  for (char** v = environ; *v != nullptr; ++v) {
    if (std::strncmp(*v, "GTEST_", 6) != 0) env.push_back(*v);
  }
  for (std::string& s : env_text) env.push_back(s.data());
  env.push_back(nullptr);
  char* argv[] = {exe.data(), filter.data(), nullptr};
  pid_t child = 0;
  ASSERT_EQ(
      posix_spawn(&child, exe.c_str(), nullptr, nullptr, argv, env.data()), 0);
  int status = 0;
  pid_t waited = 0;
  for (int i = 0; i < 600 && waited == 0; ++i) {  // 60 s at most
    waited = waitpid(child, &status, WNOHANG);
    if (waited == 0) usleep(100000);
  }
  if (waited == 0) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
  }
  ASSERT_EQ(waited, child) << "the child did not finish within 60 s";
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the child failed (status " << status << ")";
  std::vector<std::byte> out(kRuns * kStride);
  ASSERT_EQ(cudaMemcpy(out.data(), device() + 256, out.size(),
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  for (uint64_t r = 0; r < kRuns; ++r) {
    for (uint64_t k = 0; k < kRun; ++k) {
      ASSERT_EQ(out[r * kStride + k], Pattern(r * kRun + k)) << r << " " << k;
    }
    for (uint64_t k = kRun; k < kStride && r + 1 < kRuns; ++k) {
      ASSERT_EQ(out[r * kStride + k], std::byte{0}) << "gap " << r << " " << k;
    }
  }
}

}  // namespace
}  // namespace refit::exec
