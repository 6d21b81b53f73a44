#include "refit/transport/nccl/nccl_library.h"

#include <dlfcn.h>

#include <string>

namespace refit::exec {

namespace {

// dlsym of `name` into `fn`; false when missing.
template <typename Fn>
bool Resolve(void* lib, const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  return fn != nullptr;
}

Result<NcclApi> Load() {
  void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
#ifdef REFIT_NCCL_BUILD_PATH
  if (lib == nullptr)
    lib = dlopen(REFIT_NCCL_BUILD_PATH, RTLD_NOW | RTLD_GLOBAL);
#endif
  if (lib == nullptr) {
    const char* why = dlerror();
    return Unimplemented(
        "nccl: libnccl.so.2 could not be loaded (" +
        std::string(why ? why : "not found") +
        "); put its folder (e.g. a Python wheel's nvidia/nccl/lib) on "
        "LD_LIBRARY_PATH, or import torch first");
  }
  NcclApi api{};
  const bool all =
      Resolve(lib, "ncclGetUniqueId", api.GetUniqueId) &&
      Resolve(lib, "ncclCommInitRankConfig", api.CommInitRankConfig) &&
      Resolve(lib, "ncclCommGetAsyncError", api.CommGetAsyncError) &&
      Resolve(lib, "ncclCommAbort", api.CommAbort) &&
      Resolve(lib, "ncclCommFinalize", api.CommFinalize) &&
      Resolve(lib, "ncclCommDestroy", api.CommDestroy) &&
      Resolve(lib, "ncclCommUserRank", api.CommUserRank) &&
      Resolve(lib, "ncclCommCount", api.CommCount) &&
      Resolve(lib, "ncclCommCuDevice", api.CommCuDevice) &&
      Resolve(lib, "ncclGroupStart", api.GroupStart) &&
      Resolve(lib, "ncclGroupEnd", api.GroupEnd) &&
      Resolve(lib, "ncclSend", api.Send) &&
      Resolve(lib, "ncclRecv", api.Recv) &&
      Resolve(lib, "ncclGetErrorString", api.GetErrorString) &&
      Resolve(lib, "ncclGetLastError", api.GetLastError);
  if (!all) {
    return Unimplemented(
        "nccl: the loaded libnccl.so.2 lacks a function refit needs (NCCL "
        ">= 2.19 has them all)");
  }
  return api;
}

}  // namespace

Result<const NcclApi*> Nccl() {
  static const Result<NcclApi> api = Load();
  if (!api.ok()) return api.status();
  return &*api;
}

}  // namespace refit::exec
