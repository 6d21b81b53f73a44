#include "refit/transport/nccl/nccl_p2p_backend.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "refit/cuda/copy_rows.h"
#include "refit/cuda/cuda_check.h"
#include "refit/cuda/device_guard.h"
#include "refit/exec/copy_2d.h"

namespace refit::exec {

namespace {

using Clock = std::chrono::steady_clock;

std::string SecondsText(std::chrono::milliseconds ms) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", ms.count() / 1000.0);
  return text;
}

using cuda::DeviceGuard;

class NcclBackend final : public P2pBackend {
 public:
  NcclBackend(const NcclApi& nccl, ncclComm_t comm, NcclBackendOptions options,
              cudaStream_t stream)
      : nccl_(nccl), comm_(comm), options_(options), stream_(stream) {
    nccl_.CommUserRank(comm_, &rank_);
    nccl_.CommCount(comm_, &size_);
  }
  ~NcclBackend() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::vector<MemoryKind> kinds() const override {
    return {MemoryKind::kHost, MemoryKind::kCuda};
  }
  bool Exchangeable(const void* p) const override;
  Result<std::byte*> Allocate(uint64_t bytes) override;
  void Free(std::byte* p) override;
  Status Copy(std::span<const ConstBlock> from,
              std::span<const MutBlock> to) override;
  Status Exchange(std::span<const P2pSend> sends,
                  std::span<const P2pRecv> recvs) override;
  Status Wait() override;
  Status OrderAfter(uintptr_t cuda_stream) override;

 private:
  // Records an event after the work queued so far: Wait's progress marks.
  Status Mark();
  Status Usable() const {
    return broken_ ? FailedPrecondition(
                         "nccl backend: unusable after an earlier failure")
                   : OkStatus();
  }
  // After a timeout or an NCCL error: the backend is unusable; an owned
  // communicator is aborted (its kernels stop), a caller's is left to the
  // caller. Returns `st`, saying which.
  Status Fail(const Status& st);
  // The stream's work, waited for with Wait's timeout when the backend is
  // usable (a copy to or from pageable host memory blocks the host until
  // the stream reaches it, with no timeout of ours).
  Status Drain() { return broken_ ? OkStatus() : Wait(); }

  const NcclApi& nccl_;
  ncclComm_t comm_;
  NcclBackendOptions options_;
  cudaStream_t stream_;
  int rank_ = 0;
  int size_ = 0;
  bool broken_ = false;              // a timeout or an NCCL error happened
  bool comm_released_ = false;       // ncclCommAbort ran on the owned comm
  std::deque<cudaEvent_t> pending_;  // recorded, not yet seen complete
  std::vector<cudaEvent_t> spare_;
  cudaEvent_t order_event_ = nullptr;  // OrderAfter's
};

NcclBackend::~NcclBackend() {
  DeviceGuard guard(options_.device);
  (void)Drain();  // bounded: a stuck stream fails the backend instead
  for (cudaEvent_t e : pending_) cudaEventDestroy(e);
  for (cudaEvent_t e : spare_) cudaEventDestroy(e);
  if (order_event_ != nullptr) cudaEventDestroy(order_event_);
  cudaStreamDestroy(stream_);
  if (!options_.owns_comm || comm_released_) return;
  // A finalize that fails or times out aborts the communicator instead.
  const ncclResult_t fin = nccl_.CommFinalize(comm_);
  if ((fin == ncclSuccess || fin == ncclInProgress) &&
      AwaitComm(nccl_, comm_, options_.timeout, "ncclCommFinalize").ok()) {
    nccl_.CommDestroy(comm_);
  } else {
    nccl_.CommAbort(comm_);
  }
}

Status NcclBackend::Fail(const Status& st) {
  broken_ = true;
  if (!options_.owns_comm) {
    return Status(st.code(),
                  st.message() +
                      "; the caller's NCCL communicator is left to the caller "
                      "to abort (ncclCommAbort)");
  }
  if (comm_released_) return st;
  nccl_.CommAbort(comm_);
  comm_released_ = true;
  return Status(st.code(),
                st.message() + "; the NCCL communicator was aborted");
}

// Memory that a caller's unaborted communicator may still use after a
// failure stays allocated (leaked) rather than freed under its kernels
// (cudaFree would also wait for them).
void NcclBackend::Free(std::byte* p) {
  if (broken_ && !comm_released_) return;
  DeviceGuard guard(options_.device);
  (void)Drain();
  cudaFree(p);
}

// NCCL sends from and receives into device memory of its own device.
bool NcclBackend::Exchangeable(const void* p) const {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();  // clear it: not device memory
    return false;
  }
  return (attr.type == cudaMemoryTypeDevice ||
          attr.type == cudaMemoryTypeManaged) &&
         attr.device == options_.device;
}

Result<std::byte*> NcclBackend::Allocate(uint64_t bytes) {
  DeviceGuard guard(options_.device);
  void* p = nullptr;
  REFIT_CUDA_RETURN_IF_ERROR(
      cudaMalloc(&p, bytes),
      "nccl backend: cudaMalloc of " + std::to_string(bytes) + " bytes");
  return static_cast<std::byte*>(p);
}

// Pageable host memory (not device, managed or pinned host memory): a
// cudaMemcpyAsync to or from it blocks the host (CUDA "API synchronization
// behavior").
bool Pageable(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();  // clear it
    return true;
  }
  return attr.type == cudaMemoryTypeUnregistered;
}

template <typename Block>
bool AnyPageable(std::span<const Block> blocks) {
  for (const Block& b : blocks) {
    if (Pageable(b.base)) return true;
  }
  return false;
}

Status NcclBackend::Copy(std::span<const ConstBlock> from,
                         std::span<const MutBlock> to) {
  REFIT_RETURN_IF_ERROR(Usable());
  DeviceGuard guard(options_.device);
  // The stream's NCCL work first, under the timeout: the copy then blocks
  // only for itself, never for a peer that does not come.
  if (AnyPageable(from) || AnyPageable(to)) REFIT_RETURN_IF_ERROR(Wait());
  for (const Copy2D& c : PlanCopies2D(from, to)) {
    REFIT_RETURN_IF_ERROR(cuda::CopyRowsAsync(c.dst, c.dst_pitch, c.src,
                                              c.src_pitch, c.width, c.height,
                                              stream_, "nccl backend"));
  }
  return Mark();
}

Status NcclBackend::Exchange(std::span<const P2pSend> sends,
                             std::span<const P2pRecv> recvs) {
  REFIT_RETURN_IF_ERROR(Usable());
  DeviceGuard guard(options_.device);
  const auto queued = [](ncclResult_t r) {
    return r == ncclSuccess || r == ncclInProgress;
  };
  ncclResult_t r = nccl_.GroupStart();
  for (const P2pSend& s : sends) {
    if (!queued(r)) break;
    r = nccl_.Send(s.data, s.bytes, ncclUint8, s.peer, comm_, stream_);
  }
  for (const P2pRecv& v : recvs) {
    if (!queued(r)) break;
    r = nccl_.Recv(v.data, v.bytes, ncclUint8, v.peer, comm_, stream_);
  }
  const ncclResult_t end = nccl_.GroupEnd();
  if (!queued(r)) {
    return Fail(NcclStatus(nccl_, r, comm_, "nccl backend: ncclSend/Recv"));
  }
  if (!queued(end)) {
    return Fail(NcclStatus(nccl_, end, comm_, "nccl backend: ncclGroupEnd"));
  }
  const Status st =
      AwaitComm(nccl_, comm_, options_.timeout, "nccl backend: group");
  if (!st.ok()) return Fail(st);
  return Mark();
}

Status NcclBackend::Mark() {
  cudaEvent_t e = nullptr;
  if (spare_.empty()) {
    REFIT_CUDA_RETURN_IF_ERROR(
        cudaEventCreateWithFlags(&e, cudaEventDisableTiming),
        "nccl backend: cudaEventCreate");
  } else {
    e = spare_.back();
    spare_.pop_back();
  }
  pending_.push_back(e);
  REFIT_CUDA_RETURN_IF_ERROR(cudaEventRecord(e, stream_),
                             "nccl backend: cudaEventRecord");
  return OkStatus();
}

// An event on the caller's stream that the backend's stream waits for: the
// host does not block. Each sender's bytes leave from its own stream and each
// receiver writes on its own, so ordering each rank's stream after its
// caller's is enough.
Status NcclBackend::OrderAfter(uintptr_t cuda_stream) {
  REFIT_RETURN_IF_ERROR(Usable());
  DeviceGuard guard(options_.device);
  if (order_event_ == nullptr) {
    REFIT_CUDA_RETURN_IF_ERROR(
        cudaEventCreateWithFlags(&order_event_, cudaEventDisableTiming),
        "nccl backend: cudaEventCreate");
  }
  REFIT_CUDA_RETURN_IF_ERROR(
      cudaEventRecord(order_event_,
                      reinterpret_cast<cudaStream_t>(cuda_stream)),
      "nccl backend: an event on the caller's stream");
  REFIT_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, order_event_, 0),
                             "nccl backend: waiting for the caller's stream");
  return OkStatus();
}

// Every recorded mark that completes is progress; none for the timeout
// aborts the communicator.
Status NcclBackend::Wait() {
  REFIT_RETURN_IF_ERROR(Usable());
  DeviceGuard guard(options_.device);
  auto deadline = Clock::now() + options_.timeout;
  while (!pending_.empty()) {
    const cudaError_t q = cudaEventQuery(pending_.front());
    if (q == cudaSuccess) {
      spare_.push_back(pending_.front());
      pending_.pop_front();
      deadline = Clock::now() + options_.timeout;
      continue;
    }
    if (q != cudaErrorNotReady) {
      return Fail(cuda::CudaStatus(q, "nccl backend: the stream"));
    }
    ncclResult_t state = ncclSuccess;
    nccl_.CommGetAsyncError(comm_, &state);
    if (state != ncclSuccess && state != ncclInProgress) {
      return Fail(
          NcclStatus(nccl_, state, comm_, "nccl backend: asynchronous error"));
    }
    if (Clock::now() >= deadline) {
      return Fail(DeadlineExceeded("nccl backend: nothing finished for " +
                                   SecondsText(options_.timeout)));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  return OkStatus();
}

}  // namespace

Status NcclStatus(const NcclApi& nccl, ncclResult_t result, ncclComm_t comm,
                  const char* what) {
  if (result == ncclSuccess) return OkStatus();
  std::string message = std::string(what) + ": " + nccl.GetErrorString(result);
  if (const char* last = nccl.GetLastError(comm); last && *last) {
    message += std::string(" (") + last + ")";
  }
  return IoError(message);
}

Status AwaitComm(const NcclApi& nccl, ncclComm_t comm,
                 std::chrono::milliseconds timeout, const char* what) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    ncclResult_t state = ncclSuccess;
    REFIT_RETURN_IF_ERROR(
        NcclStatus(nccl, nccl.CommGetAsyncError(comm, &state), comm, what));
    if (state == ncclSuccess) return OkStatus();
    if (state != ncclInProgress) return NcclStatus(nccl, state, comm, what);
    if (Clock::now() >= deadline) {
      return DeadlineExceeded(std::string(what) + ": not done within " +
                              SecondsText(timeout));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

Result<std::unique_ptr<P2pBackend>> NcclP2pBackend(
    ncclComm_t comm, const NcclBackendOptions& options) {
  REFIT_ASSIGN_OR_RETURN(const NcclApi* nccl, Nccl());
  DeviceGuard guard(options.device);
  cudaStream_t stream = nullptr;
  REFIT_CUDA_RETURN_IF_ERROR(
      cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
      "nccl backend: cudaStreamCreate");
  return std::unique_ptr<P2pBackend>(
      std::make_unique<NcclBackend>(*nccl, comm, options, stream));
}

}  // namespace refit::exec
