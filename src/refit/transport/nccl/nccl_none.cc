// The NCCL copy service of a refit built without NCCL (no CUDA toolkit or no
// nccl.h): every entry says so.
#include "refit/transport/nccl/nccl_copy_service.h"

namespace refit::exec {

namespace {
Status NoNccl() {
  return Unimplemented("nccl copy service: this build of refit has no NCCL");
}
}  // namespace

Result<std::unique_ptr<CopyService>> ConnectNcclCopyService(
    Communicator&, const NcclOptions&) {
  return NoNccl();
}

Result<std::unique_ptr<CopyService>> NcclCopyServiceOnComm(void*,
                                                           const NcclOptions&) {
  return NoNccl();
}

}  // namespace refit::exec

namespace refit {
bool HaveNccl() { return false; }
}  // namespace refit
