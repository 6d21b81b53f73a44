#include "refit/nccl_communicator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "refit/exec/copy_service.h"
#include "refit/local_world.h"

namespace refit {
namespace {

using ::testing::HasSubstr;

// The "nccl" group is its control group's ranks, size and collectives.
TEST(NcclCommunicatorTest, DelegatesToItsControlGroup) {
  LocalWorldOptions options;
  options.timeout = std::chrono::seconds(7);
  LocalWorld world(2, options);
  Result<std::unique_ptr<Communicator>> nccl = NcclCommunicator(world.rank(1));
  if (!HaveNccl()) {
    ASSERT_EQ(nccl.status().code(), StatusCode::kUnimplemented);
    EXPECT_THAT(nccl.status().message(), HasSubstr("has no NCCL"));
    return;
  }
  ASSERT_TRUE(nccl.ok()) << nccl.status().ToString();
  EXPECT_EQ((*nccl)->method(), "nccl");
  EXPECT_EQ((*nccl)->rank(), 1);
  EXPECT_EQ((*nccl)->size(), 2);
  EXPECT_TRUE((*nccl)->shares_process());
  EXPECT_EQ((*nccl)->timeout(), std::chrono::seconds(7));
}

// A one-rank group opens its service on a GPU; without one the error names
// the service (never a crash or a hang).
TEST(NcclCommunicatorTest, ServiceOpensOrSaysWhyNot) {
  if (!HaveNccl()) GTEST_SKIP() << "this build has no NCCL";
  LocalWorld world(1);
  Result<std::unique_ptr<Communicator>> nccl = NcclCommunicator(world.rank(0));
  ASSERT_TRUE(nccl.ok());
  Result<std::unique_ptr<exec::CopyService>> service =
      (*nccl)->CreateCopyService();
  if (service.ok()) {
    EXPECT_EQ((*service)->rank(), 0);
    EXPECT_TRUE((*service)->Close().ok());
  } else {
    EXPECT_THAT(service.status().message(), HasSubstr("nccl copy service"));
  }
}

}  // namespace
}  // namespace refit
