// CudaIpcCommunicator: the control communicator's ranks and collectives, the
// CUDA IPC copy service over the control's own copy service.
#include "refit/cuda_ipc_communicator.h"

#include "refit/exec/copy_service.h"
#include "refit/transport/cuda_ipc/cuda_ipc_copy_service.h"

namespace refit {

namespace {

class CudaIpcGroup final : public Communicator {
 public:
  CudaIpcGroup(Communicator& control, CudaIpcGroupOptions options)
      : control_(control), options_(options) {}

  std::string_view method() const override { return "cuda_ipc"; }
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
    REFIT_ASSIGN_OR_RETURN(std::unique_ptr<exec::CopyService> metadata,
                           control_.CreateCopyService());
    REFIT_ASSIGN_OR_RETURN(std::unique_ptr<exec::IpcMemory> memory,
                           exec::CudaIpcMemory());
    exec::CudaIpcOptions o;
    o.reuse_unchanged_manifests = options_.reuse_unchanged_manifests;
    return exec::ConnectCudaIpcCopyService(std::move(metadata),
                                           std::move(memory), o);
  }

 private:
  Communicator& control_;
  CudaIpcGroupOptions options_;
};

}  // namespace

bool HaveCudaIpc() { return exec::CudaIpcMemory().ok(); }

Result<std::unique_ptr<Communicator>> CudaIpcCommunicator(
    Communicator& control, const CudaIpcGroupOptions& options) {
  if (!HaveCudaIpc()) {
    return Unimplemented(
        "the cuda_ipc refit method: this build of refit has no CUDA");
  }
  return std::unique_ptr<Communicator>(
      std::make_unique<CudaIpcGroup>(control, options));
}

}  // namespace refit
