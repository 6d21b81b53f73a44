// The copy-service conformance suite on the MPI copy service: run under
// `mpirun -np 3` (or more); each process is one rank and runs every case, in
// the same order. main initialises MPI itself and builds its world with
// MpiWorld::FromComm, as a caller with its own communicator would. With
// --checksum every endpoint is wrapped in exec::ChecksumCopyService.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "refit/exec/checksum_copy_service.h"
#include "refit/transport/conformance/copy_service_conformance.h"
#include "refit/transport/mpi/mpi_copy_service.h"
#include "refit/transport/mpi/mpi_gtest.h"
#include "refit/transport/mpi/mpi_world.h"

namespace refit::exec::conformance {
namespace {

// "<code>:<message>", and back.
std::string Encode(const Status& st) {
  return std::to_string(static_cast<int>(st.code())) + ":" + st.message();
}
Status Decode(const std::string& text) {
  const size_t colon = text.find(':');
  const int code = std::atoi(text.substr(0, colon).c_str());
  return Status(static_cast<StatusCode>(code), text.substr(colon + 1));
}

class MpiHarness : public TransportHarness {
 public:
  MpiHarness(MpiWorld& world, bool checksum)
      : world_(world), checksum_(checksum) {}

  int world_size() const override { return world_.size(); }

  // This process runs its own rank on a fresh endpoint; the ranks then share
  // their statuses in one all-gather on the world.
  Result<std::vector<Status>> RunOnRanks(const EndpointOptions& options,
                                         const RankBody& body) override {
    MpiCopyOptions copy;
    copy.timeout = options.timeout;
    if (options.max_staging_bytes > 0) {
      copy.schedule.max_staging_bytes = options.max_staging_bytes;
    }
    REFIT_ASSIGN_OR_RETURN(std::unique_ptr<CopyService> service,
                           ConnectMpiCopyService(world_, copy));
    if (checksum_) {
      service = std::make_unique<ChecksumCopyService>(std::move(service));
    }
    Status mine = body(world_.rank(), *service);
    const Status closed = service->Close();
    if (mine.ok()) mine = closed;
    service.reset();
    REFIT_ASSIGN_OR_RETURN(
        std::vector<std::string> all,
        world_.AllGather(Encode(mine), "gathering the ranks' statuses"));
    std::vector<Status> statuses;
    for (const std::string& text : all) statuses.push_back(Decode(text));
    return statuses;
  }

 private:
  MpiWorld& world_;
  bool checksum_;
};

}  // namespace
}  // namespace refit::exec::conformance

int main(int argc, char** argv) {
  using refit::exec::MpiWorld;
  namespace conformance = refit::exec::conformance;
  ::testing::InitGoogleTest(&argc, argv);
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  auto world = MpiWorld::FromComm({MPI_Comm_c2f(MPI_COMM_WORLD)},
                                  std::chrono::seconds(20));
  if (!world.ok() || (*world)->size() < 3) {
    std::fprintf(stderr, "%s\n",
                 world.ok() ? "run under mpirun -np 3 (or more)"
                            : world.status().ToString().c_str());
    return 2;
  }
  refit::exec::PrintFullOutputOnRankZero((*world)->rank());
  bool checksum = false;
  for (int i = 1; i < argc; ++i) {
    checksum |= std::string(argv[i]) == "--checksum";
  }
  conformance::MpiHarness harness(**world, checksum);
  conformance::SetHarness(&harness);
  const int failed = RUN_ALL_TESTS();
  // A broken world (a collective timed out) cannot finalize: peers may be
  // gone.
  const bool broken = (*world)->broken();
  world->reset();
  if (!broken) MPI_Finalize();
  return failed;
}
