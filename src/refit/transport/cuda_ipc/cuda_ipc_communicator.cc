// CudaIpcCommunicator: the control communicator's ranks and collectives, the
// CUDA IPC copy service over the control's own copy service.
#include "refit/cuda_ipc_communicator.h"

#include <string>

#include "refit/exec/copy_service.h"
#include "refit/exec/session/controlled_communicator.h"
#include "refit/transport/cuda_ipc/cuda_ipc_copy_service.h"

namespace refit {

namespace {

class CudaIpcGroup final : public exec::ControlledCommunicator {
 public:
  CudaIpcGroup(Communicator& control, CudaIpcGroupOptions options)
      : ControlledCommunicator(control), options_(options) {}

  std::string_view method() const override { return "cuda_ipc"; }
  Result<std::unique_ptr<exec::CopyService>> CreateCopyService() override {
    REFIT_ASSIGN_OR_RETURN(std::unique_ptr<exec::CopyService> metadata,
                           control().CreateCopyService());
    REFIT_ASSIGN_OR_RETURN(std::unique_ptr<exec::IpcMemory> memory,
                           exec::CudaIpcMemory());
    exec::CudaIpcOptions o;
    o.reuse_unchanged_manifests = options_.reuse_unchanged_manifests;
    return exec::ConnectCudaIpcCopyService(std::move(metadata),
                                           std::move(memory), o);
  }

 private:
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
  if (control.shares_process() && control.size() > 1) {
    return InvalidArgument(
        "the cuda_ipc refit method: the control group's " +
        std::to_string(control.size()) +
        " ranks are threads of one process, and CUDA maps only other "
        "processes' IPC handles; use the \"local\" method for threads");
  }
  return std::unique_ptr<Communicator>(
      std::make_unique<CudaIpcGroup>(control, options));
}

}  // namespace refit
