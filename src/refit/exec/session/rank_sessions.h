// This rank's sessions of one refit: one RankSession per destination of the
// refit (include/refit/swap.h DestinationModel; one for the usual refit
// into one destination), bound together and moved in one Run.
#ifndef REFIT_EXEC_SESSION_RANK_SESSIONS_H_
#define REFIT_EXEC_SESSION_RANK_SESSIONS_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "refit/exec/copy_service.h"
#include "refit/exec/session/rank_session.h"
#include "refit/swap.h"

namespace refit::exec {

class RankSessions {
 public:
  /// Rank `rank` (global) of the plans of every destination, in the order
  /// of `keys` (DestinationKey of each destination).
  RankSessions(std::vector<std::shared_ptr<const SessionPlan>> plans,
               std::vector<std::string> keys, int rank);

  /// Binds `src` to every destination's session and each destination model
  /// of `dsts` to the session of its destination (by DestinationKey).
  /// Errors: RankSession::Bind's (a rank of a destination's range without
  /// its model names the rank), kInvalidArgument for a model of no
  /// destination of the refit.
  Status Bind(const ShardedModel* src, std::span<const DestinationModel> dsts,
              const TransportCapabilities& transport);

  /// One refit of every destination with one Run of `service` (and one for
  /// the forwards), then the shards copied between destinations
  /// (SessionPlan::copied); fills `report`'s counts and phase times.
  Status Execute(CopyService& service, uintptr_t cuda_stream,
                 SwapReport& report);

  /// SessionPlan::params_replanned summed over the destinations.
  uint64_t params_replanned() const;

  /// RankSession::DescribeMessage of the destination carrying the message.
  std::string DescribeMessage(int src, int dst, uint64_t task) const;

 private:
  Status CopyShared(CopyService& service);

  std::vector<std::unique_ptr<RankSession>> sessions_;
  std::vector<std::string> keys_;
  int rank_;
  uint64_t bytes_copied_ = 0;  // per refit, this rank
};

}  // namespace refit::exec

#endif  // REFIT_EXEC_SESSION_RANK_SESSIONS_H_
