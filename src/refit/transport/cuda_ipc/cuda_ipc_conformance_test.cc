// The copy-service conformance suite on the CUDA IPC copy service, ranks as
// threads of this process: the embedded copy service carries the control
// messages, ThreadIpcMemory stands in for device memory.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "refit/transport/conformance/copy_service_conformance.h"
#include "refit/transport/cuda_ipc/cuda_ipc_copy_service.h"
#include "refit/transport/cuda_ipc/thread_ipc_memory.h"
#include "refit/transport/embedded/embedded_copy_service.h"

namespace refit::exec::conformance {
namespace {

class CudaIpcThreadHarness : public TransportHarness {
 public:
  explicit CudaIpcThreadHarness(int world) : world_(world) {}

  int world_size() const override { return world_; }

  // One control fabric per case (its timeout is the case's); the service
  // never stages, so max_staging_bytes does not apply.
  Result<std::vector<Status>> RunOnRanks(const EndpointOptions& options,
                                         const RankBody& body) override {
    EmbeddedFabric control(world_, options.timeout);
    return RunOnThreads(
        world_,
        [&](int r) {
          return ConnectCudaIpcCopyService(control.Connect(r),
                                           std::make_unique<ThreadIpcMemory>());
        },
        body);
  }

 private:
  int world_;
};

}  // namespace
}  // namespace refit::exec::conformance

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  refit::exec::conformance::CudaIpcThreadHarness harness(4);
  refit::exec::conformance::SetHarness(&harness);
  return RUN_ALL_TESTS();
}
