// The group agreeing on a Status: every rank contributes its own, every rank
// gets the same answer (the lowest failing rank's error), so that all ranks
// fail or succeed together and none is left waiting for a peer that gave up.
#ifndef REFIT_EXEC_SESSION_AGREEMENT_H_
#define REFIT_EXEC_SESSION_AGREEMENT_H_

#include <string>
#include <string_view>
#include <vector>

#include "refit/communicator.h"
#include "refit/core/status.h"

namespace refit::exec {

/// Every rank's `mine` (its value, or its error), indexed by rank.
/// Errors: the lowest failing rank's error, with its code, preferring a
/// rank that failed by itself to one that failed because a peer did
/// (kAborted); the collective's.
Result<std::vector<std::string>> GatherValues(Communicator& group,
                                              const Result<std::string>& mine);

/// OK when every rank's `mine` is OK; else GatherValues's choice of error.
/// Errors: also the collective's.
Status AgreeOnStatus(Communicator& group, const Status& mine);

}  // namespace refit::exec

#endif  // REFIT_EXEC_SESSION_AGREEMENT_H_
