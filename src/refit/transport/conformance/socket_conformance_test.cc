// The copy-service conformance suite on the "socket" copy service: the p2p
// copy service over a SocketMesh, each rank a thread with its own
// connections (as processes of one node would have them).
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "refit/io/test_temp_dir.h"
#include "refit/transport/conformance/copy_service_conformance.h"
#include "refit/transport/p2p/p2p_copy_service.h"
#include "refit/transport/socket/socket_mesh.h"
#include "refit/transport/socket/socket_p2p_backend.h"

namespace refit::exec::conformance {
namespace {

class SocketHarness : public TransportHarness {
 public:
  explicit SocketHarness(int world) : world_(world) {}

  int world_size() const override { return world_; }

  Result<std::vector<Status>> RunOnRanks(const EndpointOptions& options,
                                         const RankBody& body) override {
    const ::refit::testing::TempDir folder;
    const std::string dir = folder.str();
    P2pCopyOptions service;
    service.name = "socket copy service";
    service.timeout = options.timeout;
    if (options.max_staging_bytes > 0) {
      service.max_staging_bytes = options.max_staging_bytes;
    }
    // Every rank's connections stay open until all ranks are done: a rank
    // that finished is a quiet peer (as a process keeps its group), not a
    // closed one.
    std::vector<std::shared_ptr<SocketMesh>> meshes(world_);
    return RunOnThreads(
        world_,
        [&](int r) -> Result<std::unique_ptr<CopyService>> {
          REFIT_ASSIGN_OR_RETURN(
              meshes[r], SocketMesh::Connect(dir, r, world_, options.timeout));
          return MakeP2pCopyService(SocketP2pBackend(meshes[r], 1), service);
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
  refit::exec::conformance::SocketHarness harness(4);
  refit::exec::conformance::SetHarness(&harness);
  return RUN_ALL_TESTS();
}
