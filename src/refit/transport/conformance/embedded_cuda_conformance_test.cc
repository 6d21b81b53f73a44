// The conformance suite on the embedded copy service with CUDA movers and
// the cases' buffers in device memory (label gpu): ranks are threads sharing
// one GPU, every copy a cudaMemcpy2DAsync. Skipped without a device.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "refit/cuda/cuda_check.h"
#include "refit/exec/block_mover.h"
#include "refit/transport/conformance/copy_service_conformance.h"
#include "refit/transport/conformance/cuda_regions.h"
#include "refit/transport/embedded/embedded_copy_service.h"

namespace refit::exec::conformance {
namespace {

class EmbeddedCudaHarness : public TransportHarness {
 public:
  int world_size() const override { return 4; }
  std::string skip_reason() const override {
    return cuda::DeviceCount() > 0 ? "" : "no CUDA device";
  }
  RegionMemory* region_memory() override { return &regions_; }
  Result<std::vector<Status>> RunOnRanks(const EndpointOptions& options,
                                         const RankBody& body) override {
    EmbeddedFabric fabric(4, options.timeout, CudaBlockMover);
    return RunOnThreads(
        4,
        [&](int r) -> Result<std::unique_ptr<CopyService>> {
          return fabric.Connect(r);
        },
        body);
  }

 private:
  CudaRegions regions_;
};

}  // namespace
}  // namespace refit::exec::conformance

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  refit::exec::conformance::EmbeddedCudaHarness harness;
  refit::exec::conformance::SetHarness(&harness);
  return RUN_ALL_TESTS();
}
