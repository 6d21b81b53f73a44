// MpiWorld in a process where MPI is not initialised (no mpirun needed).
#include "refit/transport/mpi/mpi_world.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace refit::exec {
namespace {

TEST(MpiWorldTest, FromCommNeedsMpiInitialised) {
  auto world = MpiWorld::FromComm({}, std::chrono::seconds(1));
  EXPECT_EQ(world.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(world.status().message(),
              ::testing::HasSubstr("not initialised"));
}

}  // namespace
}  // namespace refit::exec
