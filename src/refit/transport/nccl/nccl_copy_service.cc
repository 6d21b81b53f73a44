#include "refit/transport/nccl/nccl_copy_service.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#include <string>

#include "refit/cuda/cuda_check.h"
#include "refit/transport/nccl/nccl_library.h"
#include "refit/transport/nccl/nccl_p2p_backend.h"
#include "refit/transport/p2p/p2p_copy_service.h"

namespace refit::exec {

namespace {

// Errors: kFailedPrecondition when this process sees no CUDA device.
Result<int> DeviceOf(const NcclOptions& options, int rank) {
  if (cuda::DeviceCount() == 0) {
    return FailedPrecondition(
        "nccl copy service: rank " + std::to_string(rank) +
        " sees no CUDA device (the nccl method needs one GPU per rank)");
  }
  if (options.device >= 0) return options.device;
  int device = 0;
  REFIT_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device),
                             "nccl copy service: cudaGetDevice");
  return device;
}

P2pCopyOptions ServiceOptions(const NcclOptions& options) {
  P2pCopyOptions p2p;
  p2p.name = "nccl copy service";
  p2p.timeout = options.timeout;
  p2p.max_staging_bytes = options.max_staging_bytes;
  return p2p;
}

// Rank 0's unique id, spread over `control`. Every rank joins the AllGather,
// also when rank 0 could not make an id (it sends none), so no rank waits.
Result<ncclUniqueId> SharedId(const Result<const NcclApi*>& nccl,
                              Communicator& control) {
  ncclUniqueId id{};
  std::string mine;
  Status made;
  if (control.rank() == 0) {
    made = nccl.ok() ? NcclStatus(**nccl, (*nccl)->GetUniqueId(&id), nullptr,
                                  "nccl copy service: ncclGetUniqueId")
                     : nccl.status();
    if (made.ok()) mine.assign(reinterpret_cast<const char*>(&id), sizeof(id));
  }
  REFIT_ASSIGN_OR_RETURN(std::vector<std::string> all, control.AllGather(mine));
  REFIT_RETURN_IF_ERROR(made);
  if (all.empty() || all[0].size() != sizeof(id)) {
    return Internal(
        "nccl copy service: rank 0 could not make an NCCL unique id");
  }
  std::memcpy(&id, all[0].data(), sizeof(id));
  return id;
}

}  // namespace

Result<std::unique_ptr<CopyService>> ConnectNcclCopyService(
    Communicator& control, const NcclOptions& options) {
  const Result<const NcclApi*> loaded = Nccl();
  REFIT_ASSIGN_OR_RETURN(const ncclUniqueId id, SharedId(loaded, control));
  REFIT_ASSIGN_OR_RETURN(const NcclApi* nccl, loaded);
  REFIT_ASSIGN_OR_RETURN(const int device, DeviceOf(options, control.rank()));
  REFIT_CUDA_RETURN_IF_ERROR(cudaSetDevice(device),
                             "nccl copy service: cudaSetDevice");
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  const ncclResult_t init = nccl->CommInitRankConfig(&comm, control.size(), id,
                                                     control.rank(), &config);
  const Status ready =
      init == ncclSuccess || init == ncclInProgress
          ? AwaitComm(*nccl, comm, control.timeout(),
                      "nccl copy service: communicator setup")
          : NcclStatus(*nccl, init, comm,
                       "nccl copy service: ncclCommInitRankConfig");
  Result<std::unique_ptr<P2pBackend>> p2p =
      ready.ok()
          ? NcclP2pBackend(comm, {options.timeout, device, /*owns_comm=*/true})
          : Result<std::unique_ptr<P2pBackend>>(ready);
  if (!p2p.ok()) {
    // Released on every failure: NCCL frees a process's shared resources
    // only once all its communicators are destroyed or aborted.
    if (comm != nullptr) nccl->CommAbort(comm);
    return p2p.status();
  }
  return MakeP2pCopyService(std::move(p2p).value(), ServiceOptions(options));
}

Result<std::unique_ptr<CopyService>> NcclCopyServiceOnComm(
    void* nccl_comm, const NcclOptions& options) {
  REFIT_ASSIGN_OR_RETURN(const NcclApi* nccl, Nccl());
  auto comm = static_cast<ncclComm_t>(nccl_comm);
  int device = options.device;
  if (device < 0) {
    REFIT_RETURN_IF_ERROR(NcclStatus(*nccl, nccl->CommCuDevice(comm, &device),
                                     comm,
                                     "nccl copy service: ncclCommCuDevice"));
  }
  NcclBackendOptions backend{options.timeout, device, /*owns_comm=*/false};
  REFIT_ASSIGN_OR_RETURN(std::unique_ptr<P2pBackend> p2p,
                         NcclP2pBackend(comm, backend));
  return MakeP2pCopyService(std::move(p2p), ServiceOptions(options));
}

}  // namespace refit::exec

namespace refit {
bool HaveNccl() { return true; }
}  // namespace refit
