// The NCCL copy service on GPUs (label gpu; skipped without devices): one
// rank on one device sending to itself, and the conformance suite with one
// rank per device (ranks as threads) where 3 or more devices exist.
#include <cuda_runtime_api.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nccl.h>

#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "refit/cuda/cuda_check.h"
#include "refit/local_world.h"
#include "refit/nccl_communicator.h"
#include "refit/transport/conformance/copy_service_conformance.h"
#include "refit/transport/conformance/cuda_regions.h"
#include "refit/transport/nccl/nccl_library.h"
#include "refit/transport/nccl/nccl_p2p_backend.h"
#include "refit/transport/p2p/p2p_copy_service.h"

namespace refit::exec {
namespace {

std::vector<std::byte> Pattern(size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte((i * 13 + seed) & 0xFF);
  return v;
}

// Device memory of `n` bytes holding `bytes` (or zeros).
std::byte* DeviceBytes(size_t n, const std::vector<std::byte>* bytes) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, n), cudaSuccess);
  if (bytes != nullptr) {
    cudaMemcpy(p, bytes->data(), n, cudaMemcpyHostToDevice);
  } else {
    cudaMemset(p, 0, n);
  }
  return static_cast<std::byte*>(p);
}

std::vector<std::byte> HostCopy(const std::byte* d, size_t n) {
  std::vector<std::byte> v(n);
  cudaMemcpy(v.data(), d, n, cudaMemcpyDeviceToHost);
  return v;
}

// World 1: a strided device source into contiguous device memory (staged),
// contiguous device to device (in place), host to device and device to host
// (staged through the device); twice, the second time without lists.
TEST(NcclGpuTest, SelfSendsEveryMemoryKind) {
  if (cuda::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  LocalWorld world(1);
  auto group = NcclCommunicator(world.rank(0));
  ASSERT_TRUE(group.ok()) << group.status().ToString();
  auto service = (*group)->CreateCopyService();
  ASSERT_TRUE(service.ok()) << service.status().ToString();
  CopyService& svc = **service;
  constexpr size_t kN = 3 << 20;
  const auto a = Pattern(2 * kN, 1), b = Pattern(kN, 2), h = Pattern(kN, 3);
  std::byte* src_a = DeviceBytes(2 * kN, &a);
  std::byte* src_b = DeviceBytes(kN, &b);
  std::byte* dst_a = DeviceBytes(kN, nullptr);
  std::byte* dst_b = DeviceBytes(kN, nullptr);
  std::byte* dst_h = DeviceBytes(kN, nullptr);
  std::vector<std::byte> back(kN);
  for (int run = 0; run < 2; ++run) {
    ASSERT_TRUE(svc.SubmitSend(0, 1, {{src_a, 512, kN / 512, 1024}}).ok());
    ASSERT_TRUE(svc.SubmitRecv(0, 1, {{dst_a, kN, 1, kN}}).ok());
    ASSERT_TRUE(svc.SubmitSend(0, 2, {{src_b, kN, 1, kN}}).ok());
    ASSERT_TRUE(svc.SubmitRecv(0, 2, {{dst_b, kN, 1, kN}}).ok());
    ASSERT_TRUE(svc.SubmitSend(0, 3, {{h.data(), kN, 1, kN}}).ok());
    ASSERT_TRUE(svc.SubmitRecv(0, 3, {{dst_h, kN, 1, kN}}).ok());
    ASSERT_TRUE(svc.SubmitSend(0, 4, {{src_b, kN, 1, kN}}).ok());
    ASSERT_TRUE(svc.SubmitRecv(0, 4, {{back.data(), kN, 1, kN}}).ok());
    const Status st = svc.Run();
    ASSERT_TRUE(st.ok()) << st.ToString();
    const auto got_a = HostCopy(dst_a, kN);
    for (size_t i = 0; i < kN; ++i) {
      ASSERT_EQ(got_a[i], a[(i / 512) * 1024 + i % 512]) << i;
    }
    EXPECT_EQ(HostCopy(dst_b, kN), b);
    EXPECT_EQ(HostCopy(dst_h, kN), h);
    EXPECT_EQ(back, b);
  }
  EXPECT_TRUE(svc.Close().ok());
  for (std::byte* p : {src_a, src_b, dst_a, dst_b, dst_h}) cudaFree(p);
}

// One rank per device, as threads; the suite's buffers in device memory
// (`--host-regions`: in host memory, staged through each device).
class NcclHarness : public conformance::TransportHarness {
 public:
  explicit NcclHarness(bool host_regions)
      : world_(std::min(cuda::DeviceCount(), 4)), host_regions_(host_regions) {}
  conformance::RegionMemory* region_memory() override {
    return host_regions_ ? nullptr : &cuda_regions_;
  }
  int world_size() const override { return std::max(world_, 3); }
  std::string skip_reason() const override {
    return world_ >= 3
               ? ""
               : "needs 3 CUDA devices, found " + std::to_string(world_);
  }
  Result<std::vector<Status>> RunOnRanks(
      const conformance::EndpointOptions& options,
      const conformance::RankBody& body) override {
    REFIT_ASSIGN_OR_RETURN(const NcclApi* nccl, Nccl());
    ncclUniqueId id;
    REFIT_RETURN_IF_ERROR(
        NcclStatus(*nccl, nccl->GetUniqueId(&id), nullptr, "id"));
    std::vector<Status> statuses(world_);
    std::vector<std::thread> threads;
    for (int r = 0; r < world_; ++r) {
      threads.emplace_back(
          [&, r] { statuses[r] = RunRank(r, id, options, body); });
    }
    for (std::thread& t : threads) t.join();
    return statuses;
  }

 private:
  Status RunRank(int r, ncclUniqueId id,
                 const conformance::EndpointOptions& options,
                 const conformance::RankBody& body) {
    REFIT_ASSIGN_OR_RETURN(const NcclApi* nccl, Nccl());
    cudaSetDevice(r);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclComm_t comm = nullptr;
    const ncclResult_t init =
        nccl->CommInitRankConfig(&comm, world_, id, r, &config);
    if (init != ncclInProgress) {
      REFIT_RETURN_IF_ERROR(NcclStatus(*nccl, init, comm, "init"));
    }
    // Setup takes seconds on some machines: not the case's Run timeout (a
    // silent-peer case sets 0.3 s).
    const Status ready =
        AwaitComm(*nccl, comm, std::chrono::seconds(60), "init");
    if (!ready.ok()) {
      nccl->CommAbort(comm);
      return ready;
    }
    REFIT_ASSIGN_OR_RETURN(auto backend,
                           NcclP2pBackend(comm, {options.timeout, r, true}));
    P2pCopyOptions p2p;
    p2p.name = "nccl copy service";
    p2p.timeout = options.timeout;
    if (options.max_staging_bytes > 0) {
      p2p.max_staging_bytes = options.max_staging_bytes;
    }
    auto service = MakeP2pCopyService(std::move(backend), p2p);
    Status st = body(r, *service);
    const Status closed = service->Close();
    return st.ok() ? closed : st;
  }

  int world_;
  bool host_regions_;
  conformance::CudaRegions cuda_regions_;
};

}  // namespace
}  // namespace refit::exec

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  bool host_regions = false;
  for (int i = 1; i < argc; ++i) {
    host_regions |= std::string_view(argv[i]) == "--host-regions";
  }
  refit::exec::NcclHarness harness(host_regions);
  refit::exec::conformance::SetHarness(&harness);
  return RUN_ALL_TESTS();
}
