// A TransportHarness whose ranks are processes, as they are in production:
// each case's RunOnRanks spawns this test binary once per rank (the same
// case, --gtest_filter, and which of its calls), each rank joins a "socket"
// group through a fresh rendezvous folder and runs its part on the copy
// service made over it, and writes its status to a file; the parent
// collects the statuses and the case checks them. In a rank process the
// spawned call returns that rank's status alone and the case's other calls
// return at once (its own checks are moot: only the file counts). Every
// rank keeps its connections until all are done, so a finished rank is a
// quiet peer.
#ifndef REFIT_TRANSPORT_CONFORMANCE_PROCESS_HARNESS_H_
#define REFIT_TRANSPORT_CONFORMANCE_PROCESS_HARNESS_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "refit/communicator.h"
#include "refit/io/test_temp_dir.h"
#include "refit/transport/conformance/copy_service_conformance.h"

namespace refit::exec::conformance {

/// A rank's copy service over its socket `group`; `keep` holds anything the
/// service needs alive (e.g. the "cuda_ipc" group made over `group`).
using ServiceOverGroup = std::function<Result<std::unique_ptr<CopyService>>(
    Communicator& group, std::unique_ptr<Communicator>& keep)>;

class ProcessHarness : public TransportHarness {
 public:
  /// `ranks` processes per case; `regions` (not owned; nullptr: host memory)
  /// where the cases keep their buffers; `skip` the reason to skip, if any.
  ProcessHarness(int ranks, ServiceOverGroup service, RegionMemory* regions,
                 std::string skip);

  int world_size() const override { return ranks_; }
  std::string skip_reason() const override { return skip_; }
  RegionMemory* region_memory() override { return regions_; }
  Result<std::vector<Status>> RunOnRanks(const EndpointOptions& options,
                                         const RankBody& body) override;

 private:
  Result<std::vector<Status>> RunRank(int rank, const EndpointOptions& options,
                                      const RankBody& body);
  Result<std::vector<Status>> Spawn(int call);

  int ranks_;
  ServiceOverGroup service_;
  RegionMemory* regions_;
  std::string skip_;
  std::string test_;  // the case whose RunOnRanks calls calls_ counts
  int calls_ = 0;
  int spawns_ = 0;
  // The parent's folder of rendezvous and status files (made at the first
  // spawn, removed with the harness).
  std::optional<::refit::testing::TempDir> folder_;
};

}  // namespace refit::exec::conformance

#endif  // REFIT_TRANSPORT_CONFORMANCE_PROCESS_HARNESS_H_
