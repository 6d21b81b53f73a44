// NcclCommunicator: the control communicator's ranks and collectives, NCCL's
// copy service.
#include "refit/nccl_communicator.h"

#include "refit/exec/session/controlled_communicator.h"
#include "refit/transport/nccl/nccl_copy_service.h"

namespace refit {

namespace {

class NcclGroup final : public exec::ControlledCommunicator {
 public:
  NcclGroup(Communicator& control, NcclOptions options)
      : ControlledCommunicator(control), options_(options) {}

  std::string_view method() const override { return "nccl"; }
  Result<std::unique_ptr<exec::CopyService>> CreateCopyService() override {
    return exec::ConnectNcclCopyService(control(), options_);
  }

 private:
  NcclOptions options_;
};

}  // namespace

Result<std::unique_ptr<Communicator>> NcclCommunicator(
    Communicator& control, const NcclOptions& options) {
  if (!HaveNccl()) {
    return Unimplemented(
        "the nccl refit method: this build of refit has no NCCL (it needs "
        "the CUDA toolkit with NCCL at build time)");
  }
  return std::unique_ptr<Communicator>(
      std::make_unique<NcclGroup>(control, options));
}

}  // namespace refit
