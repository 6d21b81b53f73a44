// The NCCL functions refit calls, resolved from libnccl.so.2 at first use
// (dlopen) instead of at link time: a process that never uses the nccl
// method never needs NCCL, `import refit` works where NCCL is absent, and a
// process that already loaded NCCL (PyTorch does) shares that copy. Only the
// header (nccl.h, for types and NCCL_CONFIG_INITIALIZER) is needed to build.
#ifndef REFIT_TRANSPORT_NCCL_NCCL_LIBRARY_H_
#define REFIT_TRANSPORT_NCCL_NCCL_LIBRARY_H_

#include <nccl.h>

#include "refit/core/status.h"

namespace refit::exec {

struct NcclApi {
  decltype(&ncclGetUniqueId) GetUniqueId;
  decltype(&ncclCommInitRankConfig) CommInitRankConfig;
  decltype(&ncclCommGetAsyncError) CommGetAsyncError;
  decltype(&ncclCommAbort) CommAbort;
  decltype(&ncclCommFinalize) CommFinalize;
  decltype(&ncclCommDestroy) CommDestroy;
  decltype(&ncclCommUserRank) CommUserRank;
  decltype(&ncclCommCount) CommCount;
  decltype(&ncclCommCuDevice) CommCuDevice;
  decltype(&ncclGroupStart) GroupStart;
  decltype(&ncclGroupEnd) GroupEnd;
  decltype(&ncclSend) Send;
  decltype(&ncclRecv) Recv;
  decltype(&ncclGetErrorString) GetErrorString;
  decltype(&ncclGetLastError) GetLastError;
};

/// The functions of libnccl.so.2: the copy already loaded in the process,
/// else the dynamic loader's search (LD_LIBRARY_PATH, e.g. a Python wheel's
/// nvidia/nccl/lib), else the library found when refit was built. Loaded
/// once; thread-safe. Errors: kUnimplemented naming the library and the
/// loader's message when it cannot be loaded or lacks a function.
Result<const NcclApi*> Nccl();

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_NCCL_NCCL_LIBRARY_H_
