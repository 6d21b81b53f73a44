#include "refit/exec/block_mover.h"

namespace refit::exec {

namespace {

class HostMover final : public BlockMover {
 public:
  std::vector<MemoryKind> kinds() const override { return {MemoryKind::kHost}; }
  Status Move(std::span<const ConstBlock> from,
              std::span<const MutBlock> to) override {
    GatherScatter(from, to);
    return OkStatus();
  }
};

}  // namespace

std::unique_ptr<BlockMover> HostBlockMover() {
  return std::make_unique<HostMover>();
}

}  // namespace refit::exec
