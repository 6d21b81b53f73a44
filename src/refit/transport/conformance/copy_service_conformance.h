// One conformance suite for every transport behind CopyService. The same
// cases (CopyServiceConformance.*, copy_service_conformance.cc) run unchanged
// against each transport through a TransportHarness that runs a per-rank body
// on ranks 0..N-1: the embedded copy service with ranks as threads of one
// test binary, the MPI one with one process per rank under mpirun. Each
// transport's test binary sets its harness and runs the cases.
#ifndef REFIT_TRANSPORT_CONFORMANCE_COPY_SERVICE_CONFORMANCE_H_
#define REFIT_TRANSPORT_CONFORMANCE_COPY_SERVICE_CONFORMANCE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "refit/core/status.h"
#include "refit/exec/copy_service.h"

namespace refit::exec::conformance {

/// How a case opens the endpoints of its ranks.
struct EndpointOptions {
  /// Run fails after this long without progress.
  std::chrono::milliseconds timeout = std::chrono::seconds(20);
  /// Staging bound per rank, in bytes, for a transport that stages; 0: the
  /// transport's default.
  uint64_t max_staging_bytes = 0;
};

/// One rank's part of a case, given its rank and its endpoint. Returns what
/// the rank saw: its Run's error, or an error describing wrong bytes.
using RankBody = std::function<Status(int rank, CopyService& service)>;

/// Where the cases keep their message buffers when not in host memory: e.g.
/// cudaMalloc memory, filled and checked through host copies. Used from
/// every rank's thread at once.
class RegionMemory {
 public:
  virtual ~RegionMemory() = default;
  /// The kind of memory Allocate returns (the transport must read and write
  /// it).
  virtual MemoryKind kind() const = 0;
  /// `bytes` (> 0) of memory, and its release. Errors: the allocator's.
  virtual Result<std::byte*> Allocate(uint64_t bytes) = 0;
  virtual void Free(std::byte* p) = 0;
  /// Copies `bytes` from host memory into it, and back, returning when done.
  virtual Status Upload(std::byte* dst, const std::byte* src,
                        uint64_t bytes) = 0;
  virtual Status Download(std::byte* dst, const std::byte* src,
                          uint64_t bytes) = 0;
};

/// Runs the per-rank bodies of a case on one transport.
class TransportHarness {
 public:
  virtual ~TransportHarness() = default;
  /// Number of ranks the cases run on (at least 3).
  virtual int world_size() const = 0;
  /// Opens an endpoint for every rank 0..world_size()-1 with `options`, runs
  /// `body` on each rank at the same time (a rank's Run waits for its
  /// peers), releases the endpoints, and returns every rank's Status indexed
  /// by rank, alike in every process of the transport.
  /// Errors: opening the endpoints failed, or the statuses could not be
  /// gathered.
  virtual Result<std::vector<Status>> RunOnRanks(const EndpointOptions& options,
                                                 const RankBody& body) = 0;
  /// Why the cases cannot run here (e.g. "needs 3 CUDA devices, found 1"):
  /// each is then skipped with this reason. Empty: they run.
  virtual std::string skip_reason() const { return {}; }
  /// Where the cases' buffers live: nullptr for host memory (the default).
  virtual RegionMemory* region_memory() { return nullptr; }
};

/// For harnesses whose ranks are threads of one process: runs `body` on
/// `world` threads at once, rank r on the endpoint connect(r) (closed after
/// the body), and returns every rank's status: connect's error, else the
/// body's, else Close's.
using Connect = std::function<Result<std::unique_ptr<CopyService>>(int rank)>;
std::vector<Status> RunOnThreads(int world, const Connect& connect,
                                 const RankBody& body);

/// Sets the harness the cases run against (not owned); call before
/// RUN_ALL_TESTS.
void SetHarness(TransportHarness* harness);

}  // namespace refit::exec::conformance

#endif  // REFIT_TRANSPORT_CONFORMANCE_COPY_SERVICE_CONFORMANCE_H_
