// The conformance suite on the "socket" copy service with its ranks as
// processes (process_harness.h): the transport as a group launched without
// MPI uses it.
#include <gtest/gtest.h>

#include "refit/transport/conformance/process_harness.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  refit::exec::conformance::ProcessHarness harness(
      3,
      [](refit::Communicator& group, std::unique_ptr<refit::Communicator>&) {
        return group.CreateCopyService();
      },
      nullptr, "");
  refit::exec::conformance::SetHarness(&harness);
  return RUN_ALL_TESTS();
}
