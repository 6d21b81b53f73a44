// The copy-service conformance suite on the p2p copy service over the thread
// backend (ranks as threads of this process): the NCCL transport's protocol
// without a GPU. `--staged` exchanges only backend memory, as NCCL does with
// device memory, so every chunk of the cases' host memory is staged.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "refit/transport/conformance/copy_service_conformance.h"
#include "refit/transport/p2p/p2p_copy_service.h"
#include "refit/transport/p2p/thread_p2p_backend.h"

namespace refit::exec::conformance {
namespace {

class ThreadP2pHarness : public TransportHarness {
 public:
  ThreadP2pHarness(int world, bool staged) : world_(world), staged_(staged) {}

  int world_size() const override { return world_; }

  Result<std::vector<Status>> RunOnRanks(const EndpointOptions& options,
                                         const RankBody& body) override {
    ThreadP2pFabric fabric(world_, {options.timeout, !staged_});
    P2pCopyOptions service_options;
    service_options.timeout = options.timeout;
    if (options.max_staging_bytes > 0) {
      service_options.max_staging_bytes = options.max_staging_bytes;
    }
    return RunOnThreads(
        world_,
        [&](int r) -> Result<std::unique_ptr<CopyService>> {
          return MakeP2pCopyService(fabric.Connect(r), service_options);
        },
        body);
  }

 private:
  int world_;
  bool staged_;
};

}  // namespace
}  // namespace refit::exec::conformance

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  bool staged = false;
  for (int i = 1; i < argc; ++i)
    staged |= std::strcmp(argv[i], "--staged") == 0;
  refit::exec::conformance::ThreadP2pHarness harness(4, staged);
  refit::exec::conformance::SetHarness(&harness);
  return RUN_ALL_TESTS();
}
