// The copy-service conformance suite through exec::ChecksumCopyService (the
// --verify checksum layer): over the embedded copy service, or with --p2p
// over the p2p copy service with every chunk staged. Every case must pass
// unchanged: the 16-byte trailer never shows, errors keep their wording.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "refit/exec/checksum_copy_service.h"
#include "refit/transport/conformance/copy_service_conformance.h"
#include "refit/transport/embedded/embedded_copy_service.h"
#include "refit/transport/p2p/p2p_copy_service.h"
#include "refit/transport/p2p/thread_p2p_backend.h"

namespace refit::exec::conformance {
namespace {

class ChecksumHarness : public TransportHarness {
 public:
  ChecksumHarness(int world, bool p2p) : world_(world), p2p_(p2p) {}

  int world_size() const override { return world_; }

  Result<std::vector<Status>> RunOnRanks(const EndpointOptions& options,
                                         const RankBody& body) override {
    EmbeddedFabric embedded(world_, options.timeout);
    ThreadP2pFabric p2p(world_,
                        {options.timeout, /*exchange_any_memory=*/false});
    P2pCopyOptions p2p_options;
    p2p_options.timeout = options.timeout;
    if (options.max_staging_bytes > 0) {
      p2p_options.max_staging_bytes = options.max_staging_bytes;
    }
    return RunOnThreads(
        world_,
        [&](int r) -> Result<std::unique_ptr<CopyService>> {
          std::unique_ptr<CopyService> inner =
              p2p_ ? MakeP2pCopyService(p2p.Connect(r), p2p_options)
                   : embedded.Connect(r);
          return std::unique_ptr<CopyService>(
              std::make_unique<ChecksumCopyService>(std::move(inner)));
        },
        body);
  }

 private:
  int world_;
  bool p2p_;
};

}  // namespace
}  // namespace refit::exec::conformance

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  bool p2p = false;
  for (int i = 1; i < argc; ++i) p2p |= std::strcmp(argv[i], "--p2p") == 0;
  refit::exec::conformance::ChecksumHarness harness(4, p2p);
  refit::exec::conformance::SetHarness(&harness);
  return RUN_ALL_TESTS();
}
