#include "refit/transport/socket/socket_p2p_backend.h"

#include <utility>

namespace refit::exec {

namespace {

class SocketBackend final : public P2pBackend {
 public:
  SocketBackend(std::shared_ptr<SocketMesh> mesh, uint64_t channel)
      : mesh_(std::move(mesh)), channel_(channel) {}

  int rank() const override { return mesh_->rank(); }
  int size() const override { return mesh_->size(); }
  std::vector<MemoryKind> kinds() const override { return {MemoryKind::kHost}; }
  bool Exchangeable(const void* /*p*/) const override { return true; }
  Result<std::byte*> Allocate(uint64_t bytes) override {
    return new std::byte[bytes];
  }
  void Free(std::byte* p) override { delete[] p; }
  Status Copy(std::span<const ConstBlock> from,
              std::span<const MutBlock> to) override {
    GatherScatter(from, to);
    return OkStatus();
  }
  Status Exchange(std::span<const P2pSend> sends,
                  std::span<const P2pRecv> recvs) override {
    return mesh_->Exchange(channel_, sends, recvs);
  }
  Status Wait() override { return OkStatus(); }

 private:
  std::shared_ptr<SocketMesh> mesh_;
  uint64_t channel_;
};

}  // namespace

std::unique_ptr<P2pBackend> SocketP2pBackend(std::shared_ptr<SocketMesh> mesh,
                                             uint64_t channel) {
  return std::make_unique<SocketBackend>(std::move(mesh), channel);
}

}  // namespace refit::exec
