// NcclCommunicator: the control communicator's ranks and collectives, NCCL's
// copy service.
#include "refit/nccl_communicator.h"

#include "refit/transport/nccl/nccl_copy_service.h"

namespace refit {

namespace {

class NcclGroup final : public Communicator {
 public:
  NcclGroup(Communicator& control, NcclOptions options)
      : control_(control), options_(options) {}

  std::string_view method() const override { return "nccl"; }
  int rank() const override { return control_.rank(); }
  int size() const override { return control_.size(); }
  bool shares_process() const override { return control_.shares_process(); }
  std::chrono::milliseconds timeout() const override {
    return control_.timeout();
  }
  Result<std::vector<std::string>> AllGather(std::string_view mine) override {
    return control_.AllGather(mine);
  }
  Result<std::unique_ptr<exec::CopyService>> CreateCopyService() override {
    return exec::ConnectNcclCopyService(control_, options_);
  }

 private:
  Communicator& control_;
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
