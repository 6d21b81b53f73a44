// CudaIpcMemory: the CUDA runtime's legacy IPC (cudaIpcGetMemHandle,
// cudaIpcOpenMemHandle, cudaIpcCloseMemHandle; CUDA runtime API docs,
// "Interprocess communication"). The allocation behind a pointer comes from
// the driver's cuPointerGetAttributes, reached through the runtime
// (cudaGetDriverEntryPointByVersion) so that refit links only the static
// runtime and still loads on a machine without a driver.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "refit/cuda/cuda_check.h"
#include "refit/cuda/device_guard.h"
#include "refit/exec/block_mover.h"
#include "refit/transport/cuda_ipc/ipc_memory.h"

namespace refit::exec {

namespace {

static_assert(sizeof(cudaIpcMemHandle_t) == IpcHandle::kBytes);

std::string PointerText(const void* ptr) {
  char text[32];
  std::snprintf(text, sizeof(text), "%p", ptr);
  return text;
}

// The driver's cuPointerGetAttributes, or nullptr without a driver.
PFN_cuPointerGetAttributes_v7000 PointerAttributes() {
  static const PFN_cuPointerGetAttributes_v7000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuPointerGetAttributes", &f, 12000,
                                         cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      f = nullptr;
    }
    return reinterpret_cast<PFN_cuPointerGetAttributes_v7000>(f);
  }();
  return fn;
}

// One attribute of `ptr` (cuPointerGetAttributes of one), or false.
template <typename T>
bool PointerAttribute(const void* ptr, CUpointer_attribute which, T* value) {
  PFN_cuPointerGetAttributes_v7000 attributes = PointerAttributes();
  void* data[] = {value};
  return attributes != nullptr &&
         attributes(1, &which, data, reinterpret_cast<CUdeviceptr>(ptr)) ==
             CUDA_SUCCESS;
}

class CudaIpc final : public IpcMemory {
 public:
  std::vector<MemoryKind> kinds() const override { return {MemoryKind::kCuda}; }

  uint64_t AllocationId(const std::byte* ptr) override {
    unsigned long long id = 0;
    return PointerAttribute(ptr, CU_POINTER_ATTRIBUTE_BUFFER_ID, &id) ? id : 0;
  }

  void UseDeviceOf(const std::byte* local) override {
    int device = -1;
    if (device_ < 0 &&
        PointerAttribute(local, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, &device)) {
      device_ = device;
    }
  }

  Result<IpcExport> Export(const std::byte* ptr) override {
    const std::string what = "cuda ipc memory: pointer " + PointerText(ptr);
    PFN_cuPointerGetAttributes_v7000 attributes = PointerAttributes();
    if (attributes == nullptr) {
      return Internal(what + ": no CUDA driver (cuPointerGetAttributes)");
    }
    unsigned int type = 0, ipc_capable = 0;
    CUdeviceptr start = 0;
    size_t size = 0;
    CUpointer_attribute which[] = {
        CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
        CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE,
        CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, CU_POINTER_ATTRIBUTE_RANGE_SIZE};
    void* data[] = {&type, &ipc_capable, &start, &size};
    const CUresult r =
        attributes(4, which, data, reinterpret_cast<CUdeviceptr>(ptr));
    if (r != CUDA_SUCCESS) {
      return InvalidArgument(what + " is not CUDA memory (CUresult " +
                             std::to_string(r) + ")");
    }
    if (type != CU_MEMORYTYPE_DEVICE) {
      return InvalidArgument(what +
                             " is host memory: CUDA IPC exports device "
                             "memory only (cudaIpcGetMemHandle)");
    }
    if (ipc_capable == 0 || start == 0) {
      return InvalidArgument(
          what +
          " is device memory that legacy CUDA IPC cannot export "
          "(CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE is 0): a VMM "
          "allocation (cuMemCreate, e.g. PyTorch's expandable segments) or a "
          "memory pool's");
    }
    cudaIpcMemHandle_t handle;
    REFIT_CUDA_RETURN_IF_ERROR(
        cudaIpcGetMemHandle(&handle, reinterpret_cast<void*>(start)),
        what + ": cudaIpcGetMemHandle");
    IpcExport out;
    std::memcpy(out.handle.bytes.data(), &handle, IpcHandle::kBytes);
    out.offset = reinterpret_cast<CUdeviceptr>(ptr) - start;
    out.allocation_bytes = size;
    return out;
  }

  Result<std::byte*> Open(const IpcHandle& handle) override {
    cuda::DeviceGuard guard(device_);
    cudaIpcMemHandle_t h;
    std::memcpy(&h, handle.bytes.data(), IpcHandle::kBytes);
    void* base = nullptr;
    const cudaError_t err =
        cudaIpcOpenMemHandle(&base, h, cudaIpcMemLazyEnablePeerAccess);
    if (err != cudaSuccess) {
      Status st =
          cuda::CudaStatus(err, "cuda ipc memory: cudaIpcOpenMemHandle");
      const bool bad_handle = err == cudaErrorInvalidValue ||
                              err == cudaErrorInvalidResourceHandle ||
                              err == cudaErrorInvalidDevice;
      return Status(
          bad_handle ? StatusCode::kInvalidArgument : StatusCode::kInternal,
          st.message());
    }
    return static_cast<std::byte*>(base);
  }

  Status CloseMapping(std::byte* base) override {
    cuda::DeviceGuard guard(device_);
    REFIT_CUDA_RETURN_IF_ERROR(
        cudaIpcCloseMemHandle(base),
        "cuda ipc memory: cudaIpcCloseMemHandle of " + PointerText(base));
    return OkStatus();
  }

  Status Move(std::span<const ConstBlock> from,
              std::span<const MutBlock> to) override {
    cuda::DeviceGuard guard(device_);  // the mover's stream is made there
    return mover_->Move(from, to);
  }
  Status OrderAfter(uintptr_t cuda_stream) override {
    return mover_->OrderAfter(cuda_stream);
  }

 private:
  std::unique_ptr<BlockMover> mover_ = CudaBlockMover();
  int device_ = -1;  // UseDeviceOf's; -1: the thread's current device
};

}  // namespace

Result<std::unique_ptr<IpcMemory>> CudaIpcMemory() {
  return std::unique_ptr<IpcMemory>(std::make_unique<CudaIpc>());
}

}  // namespace refit::exec
