// A Communicator whose ranks, timeout and collectives are another group's
// (its control group, e.g. an MpiCommunicator) while its bytes move over a
// transport of its own: the base of the "nccl" and "cuda_ipc" methods.
#ifndef REFIT_EXEC_SESSION_CONTROLLED_COMMUNICATOR_H_
#define REFIT_EXEC_SESSION_CONTROLLED_COMMUNICATOR_H_

#include <string>
#include <string_view>
#include <vector>

#include "refit/communicator.h"

namespace refit::exec {

class ControlledCommunicator : public Communicator {
 public:
  /// `control` must outlive this communicator.
  explicit ControlledCommunicator(Communicator& control) : control_(control) {}

  int rank() const override { return control_.rank(); }
  int size() const override { return control_.size(); }
  bool shares_process() const override { return control_.shares_process(); }
  std::chrono::milliseconds timeout() const override {
    return control_.timeout();
  }
  Result<std::vector<std::string>> AllGather(std::string_view mine) override {
    return control_.AllGather(mine);
  }

 protected:
  Communicator& control() const { return control_; }

 private:
  Communicator& control_;
};

}  // namespace refit::exec

#endif  // REFIT_EXEC_SESSION_CONTROLLED_COMMUNICATOR_H_
