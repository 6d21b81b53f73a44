// The session's process-wide caches, as seen from inside refit: what a
// Communicator's end drops.
#ifndef REFIT_EXEC_SESSION_CACHES_H_
#define REFIT_EXEC_SESSION_CACHES_H_

#include <cstdint>

namespace refit::exec {

/// Closes and drops the cached copy service and the rank sessions of the
/// communicator `id` (Communicator::id()); its plans stay cached.
void ForgetCommunicator(uint64_t id);

}  // namespace refit::exec

#endif  // REFIT_EXEC_SESSION_CACHES_H_
