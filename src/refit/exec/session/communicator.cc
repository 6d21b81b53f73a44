#include "refit/communicator.h"

#include <atomic>

#include "refit/exec/session/caches.h"

namespace refit {

namespace {
std::atomic<uint64_t> next_id{1};
}  // namespace

Communicator::Communicator() : id_(next_id.fetch_add(1)) {}

Communicator::~Communicator() { exec::ForgetCommunicator(id_); }

}  // namespace refit
