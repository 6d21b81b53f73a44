// The copy-service conformance suite on the embedded copy service: each case
// runs its ranks as threads of this process.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "refit/transport/conformance/copy_service_conformance.h"
#include "refit/transport/embedded/embedded_copy_service.h"

namespace refit::exec::conformance {
namespace {

class EmbeddedHarness : public TransportHarness {
 public:
  explicit EmbeddedHarness(int world) : world_(world) {}

  int world_size() const override { return world_; }

  // One fabric per case; the embedded service never stages, so
  // max_staging_bytes does not apply.
  Result<std::vector<Status>> RunOnRanks(const EndpointOptions& options,
                                         const RankBody& body) override {
    EmbeddedFabric fabric(world_, options.timeout);
    return RunOnThreads(
        world_,
        [&](int r) -> Result<std::unique_ptr<CopyService>> {
          return fabric.Connect(r);
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
  refit::exec::conformance::EmbeddedHarness harness(4);
  refit::exec::conformance::SetHarness(&harness);
  return RUN_ALL_TESTS();
}
