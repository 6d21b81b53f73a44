// The "mpi" refit method (include/refit/mpi_communicator.h): a Communicator
// over an MpiWorld built from the caller's communicator.
#include "refit/mpi_communicator.h"

#include "refit/exec/session/caches.h"
#include "refit/transport/mpi/mpi_copy_service.h"
#include "refit/transport/mpi/mpi_world.h"

namespace refit {

namespace {

class MpiGroup final : public Communicator {
 public:
  MpiGroup(std::unique_ptr<exec::MpiWorld> world, const MpiOptions& options)
      : world_(std::move(world)) {
    copy_.timeout = options.timeout;
    copy_.schedule.max_staging_bytes = options.max_staging_bytes;
    copy_.schedule.max_inflight = options.max_inflight;
    copy_.max_inflight_direct = options.max_inflight_direct;
  }
  // The cached copy service goes first: it must not outlive the world.
  ~MpiGroup() override { exec::ForgetCommunicator(id()); }

  std::string_view method() const override { return "mpi"; }
  int rank() const override { return world_->rank(); }
  int size() const override { return world_->size(); }
  bool shares_process() const override { return false; }
  std::chrono::milliseconds timeout() const override {
    return world_->timeout();
  }
  Result<std::vector<std::string>> AllGather(std::string_view mine) override {
    return world_->AllGather(mine, "in the refit group's agreement");
  }
  Result<std::unique_ptr<exec::CopyService>> CreateCopyService() override {
    return exec::ConnectMpiCopyService(*world_, copy_);
  }

 private:
  std::unique_ptr<exec::MpiWorld> world_;
  exec::MpiCopyOptions copy_;
};

}  // namespace

bool HaveMpi() { return true; }

Result<std::unique_ptr<Communicator>> MpiCommunicator(
    MpiCommHandle comm, const MpiOptions& options) {
  REFIT_ASSIGN_OR_RETURN(std::unique_ptr<exec::MpiWorld> world,
                         exec::MpiWorld::FromComm(comm, options.timeout));
  return std::unique_ptr<Communicator>(
      std::make_unique<MpiGroup>(std::move(world), options));
}

}  // namespace refit
