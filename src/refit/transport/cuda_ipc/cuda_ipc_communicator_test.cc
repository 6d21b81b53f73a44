#include "refit/cuda_ipc_communicator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "refit/exec/copy_service.h"
#include "refit/local_world.h"

namespace refit {
namespace {

using ::testing::HasSubstr;

// The "cuda_ipc" group is its control group's ranks and collectives; its
// service takes CUDA memory only.
TEST(CudaIpcCommunicatorTest, DelegatesToItsControlGroup) {
  LocalWorldOptions options;
  options.timeout = std::chrono::seconds(9);
  LocalWorld world(1, options);
  Result<std::unique_ptr<Communicator>> ipc =
      CudaIpcCommunicator(world.rank(0));
  if (!HaveCudaIpc()) {
    ASSERT_EQ(ipc.status().code(), StatusCode::kUnimplemented);
    EXPECT_THAT(ipc.status().message(), HasSubstr("has no CUDA"));
    return;
  }
  ASSERT_TRUE(ipc.ok()) << ipc.status().ToString();
  EXPECT_EQ((*ipc)->method(), "cuda_ipc");
  EXPECT_EQ((*ipc)->rank(), 0);
  EXPECT_EQ((*ipc)->size(), 1);
  EXPECT_EQ((*ipc)->timeout(), std::chrono::seconds(9));
  auto service = (*ipc)->CreateCopyService();
  ASSERT_TRUE(service.ok()) << service.status().ToString();
  const exec::TransportCapabilities caps = (*service)->capabilities();
  EXPECT_TRUE(caps.CanRead(MemoryKind::kCuda));
  EXPECT_FALSE(caps.CanRead(MemoryKind::kHost));
  EXPECT_TRUE(caps.receives_in_place);
  EXPECT_TRUE((*service)->Close().ok());
}

// Threads of one process cannot map each other's CUDA IPC handles: refused
// by name before any refit.
TEST(CudaIpcCommunicatorTest, RefusesRanksThatAreThreadsOfOneProcess) {
  LocalWorld world(2);
  Result<std::unique_ptr<Communicator>> ipc =
      CudaIpcCommunicator(world.rank(0));
  if (!HaveCudaIpc()) {
    EXPECT_EQ(ipc.status().code(), StatusCode::kUnimplemented);
    return;
  }
  EXPECT_EQ(ipc.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(ipc.status().message(), HasSubstr("threads of one process"));
}

}  // namespace
}  // namespace refit
