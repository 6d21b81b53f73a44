// CopyRowsAsync past cudaMemcpy2DAsync's pitch limit, on a GPU (CTest label
// `gpu`; "skipped: no CUDA device" where there is none): a contiguous piece
// over 2 GiB, and rows whose source pitch is over 2 GiB.
#include "refit/cuda/copy_rows.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

#include "refit/cuda/cuda_check.h"

namespace refit::cuda {
namespace {

class CopyRowsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  }
  void TearDown() override {
    for (void* p : buffers_) cudaFree(p);
  }
  std::byte* Filled(uint64_t bytes, int value) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, bytes), cudaSuccess);
    EXPECT_EQ(cudaMemset(p, value, bytes), cudaSuccess);
    buffers_.push_back(p);
    return static_cast<std::byte*>(p);
  }
  // The `bytes` bytes at `p` all equal `value`.
  static bool All(const std::byte* p, uint64_t bytes, int value) {
    std::vector<std::byte> host(bytes);
    EXPECT_EQ(cudaMemcpy(host.data(), p, bytes, cudaMemcpyDeviceToHost),
              cudaSuccess);
    for (std::byte b : host) {
      if (b != static_cast<std::byte>(value)) return false;
    }
    return true;
  }
  std::vector<void*> buffers_;
};

TEST_F(CopyRowsTest, ContiguousPieceOverTwoGibMovesWhole) {
  const uint64_t bytes = (uint64_t{9} << 28) + 12;  // 2.25 GiB and 12 bytes
  std::byte* src = Filled(bytes, 7);
  std::byte* dst = Filled(bytes, 0);
  ASSERT_TRUE(
      CopyRowsAsync(dst, bytes, src, bytes, bytes, 1, nullptr, "test").ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_TRUE(All(dst, 4096, 7));
  EXPECT_TRUE(All(dst + (bytes >> 1), 4096, 7));
  EXPECT_TRUE(All(dst + bytes - 4096, 4096, 7));
}

TEST_F(CopyRowsTest, RowsWithAPitchOverTwoGibMoveRowByRow) {
  const uint64_t width = 4096, pitch = kMaxCopyPitch + 1 + width;
  std::byte* src = Filled(pitch + width, 0);
  ASSERT_EQ(cudaMemset(src, 1, width), cudaSuccess);
  ASSERT_EQ(cudaMemset(src + pitch, 2, width), cudaSuccess);
  std::byte* dst = Filled(2 * width + 16, 9);
  ASSERT_TRUE(
      CopyRowsAsync(dst, width, src, pitch, width, 2, nullptr, "test").ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_TRUE(All(dst, width, 1));
  EXPECT_TRUE(All(dst + width, width, 2));
  EXPECT_TRUE(All(dst + 2 * width, 16, 9));  // nothing past the rows
}

}  // namespace
}  // namespace refit::cuda
