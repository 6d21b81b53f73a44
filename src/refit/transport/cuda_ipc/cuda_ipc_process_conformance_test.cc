// The conformance suite on the CUDA IPC copy service between processes, as
// it runs in production (label gpu; skipped without a device): each case's
// ranks are processes sharing the first GPU (process_harness.h), their
// buffers in device memory, the control messages over a "socket" group (no
// MPI on the GPU machine).
#include <gtest/gtest.h>

#include "refit/cuda/cuda_check.h"
#include "refit/cuda_ipc_communicator.h"
#include "refit/transport/conformance/cuda_regions.h"
#include "refit/transport/conformance/process_harness.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  refit::exec::conformance::CudaRegions regions;
  refit::exec::conformance::ProcessHarness harness(
      3,
      [](refit::Communicator& group, std::unique_ptr<refit::Communicator>& keep)
          -> refit::Result<std::unique_ptr<refit::exec::CopyService>> {
        REFIT_ASSIGN_OR_RETURN(keep, refit::CudaIpcCommunicator(group));
        return keep->CreateCopyService();
      },
      &regions, refit::cuda::DeviceCount() > 0 ? "" : "no CUDA device");
  refit::exec::conformance::SetHarness(&harness);
  return RUN_ALL_TESTS();
}
