// The "socket" refit method (include/refit/socket_communicator.h): a
// Communicator over a SocketMesh, its collectives on channel 0 and each copy
// service (the p2p copy service over the socket backend) on a channel of
// its own.
#include "refit/socket_communicator.h"

#include "refit/exec/session/caches.h"
#include "refit/transport/p2p/p2p_copy_service.h"
#include "refit/transport/socket/socket_mesh.h"
#include "refit/transport/socket/socket_p2p_backend.h"

namespace refit {

namespace {

class SocketGroup final : public Communicator {
 public:
  SocketGroup(std::shared_ptr<exec::SocketMesh> mesh,
              const SocketOptions& options)
      : mesh_(std::move(mesh)), options_(options) {}
  // The cached copy service goes first.
  ~SocketGroup() override { exec::ForgetCommunicator(id()); }

  std::string_view method() const override { return "socket"; }
  int rank() const override { return mesh_->rank(); }
  int size() const override { return mesh_->size(); }
  bool shares_process() const override { return false; }
  std::chrono::milliseconds timeout() const override {
    return options_.timeout;
  }
  Result<std::vector<std::string>> AllGather(std::string_view mine) override {
    return mesh_->AllGather(0, mine);
  }
  // Collective: every rank makes its services in the same order, so the
  // k-th service of each rank shares channel k.
  Result<std::unique_ptr<exec::CopyService>> CreateCopyService() override {
    exec::P2pCopyOptions o;
    o.name = "socket copy service";
    o.timeout = options_.timeout;
    o.max_staging_bytes = options_.max_staging_bytes;
    return exec::MakeP2pCopyService(exec::SocketP2pBackend(mesh_, ++services_),
                                    o);
  }

 private:
  std::shared_ptr<exec::SocketMesh> mesh_;
  SocketOptions options_;
  uint64_t services_ = 0;
};

}  // namespace

Result<std::unique_ptr<Communicator>> SocketCommunicator(
    const std::string& rendezvous, int rank, int size,
    const SocketOptions& options) {
  REFIT_ASSIGN_OR_RETURN(
      std::unique_ptr<exec::SocketMesh> mesh,
      exec::SocketMesh::Connect(rendezvous, rank, size, options.timeout));
  return std::unique_ptr<Communicator>(std::make_unique<SocketGroup>(
      std::shared_ptr<exec::SocketMesh>(std::move(mesh)), options));
}

}  // namespace refit
