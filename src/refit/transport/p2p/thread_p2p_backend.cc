#include "refit/transport/p2p/thread_p2p_backend.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace refit::exec {

namespace {

// One Exchange call while it waits: how many of its sends and receives are
// still unmatched, and the first error seen.
struct Group {
  int pending = 0;
  Status error;
};

template <typename Ptr>
struct Posted {
  Ptr data = nullptr;
  uint64_t bytes = 0;
  Group* group = nullptr;
};

}  // namespace

class ThreadP2pFabricImpl {
 public:
  ThreadP2pFabricImpl(int world, ThreadP2pOptions options)
      : world_(world),
        options_(options),
        sends_(world * world),
        recvs_(world * world) {}

  int world() const { return world_; }
  const ThreadP2pOptions& options() const { return options_; }

  Status Exchange(int me, std::span<const P2pSend> sends,
                  std::span<const P2pRecv> recvs) {
    std::unique_lock<std::mutex> lock(mu_);
    Group group;
    group.pending = static_cast<int>(sends.size() + recvs.size());
    for (const P2pSend& s : sends) {
      sends_[me * world_ + s.peer].push_back({s.data, s.bytes, &group});
    }
    for (const P2pRecv& r : recvs) {
      recvs_[r.peer * world_ + me].push_back({r.data, r.bytes, &group});
    }
    for (const P2pSend& s : sends) MatchLocked(me, s.peer);
    for (const P2pRecv& r : recvs) MatchLocked(r.peer, me);
    // Fails once nothing of this group has matched for the timeout.
    int seen = group.pending;
    auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    while (group.pending > 0) {
      cv_.wait_until(lock, deadline);
      if (group.pending != seen) {
        seen = group.pending;
        deadline = std::chrono::steady_clock::now() + options_.timeout;
      } else if (std::chrono::steady_clock::now() >= deadline) {
        Withdraw(&group);
        return DeadlineExceeded(
            "thread p2p backend: rank " + std::to_string(me) + ": " +
            std::to_string(group.pending) + " sends and receives unmatched");
      }
    }
    return group.error;
  }

 private:
  // Pairs the oldest unmatched send src -> dst with the oldest receive.
  void MatchLocked(int src, int dst) {
    auto& sends = sends_[src * world_ + dst];
    auto& recvs = recvs_[src * world_ + dst];
    while (!sends.empty() && !recvs.empty()) {
      const Posted<const std::byte*> s = sends.front();
      const Posted<std::byte*> r = recvs.front();
      sends.pop_front();
      recvs.pop_front();
      if (s.bytes != r.bytes) {
        const Status st = Internal(
            "thread p2p backend: a send of " + std::to_string(s.bytes) +
            " bytes from rank " + std::to_string(src) + " met a receive of " +
            std::to_string(r.bytes) + " bytes on rank " + std::to_string(dst));
        if (s.group->error.ok()) s.group->error = st;
        if (r.group->error.ok()) r.group->error = st;
      } else if (s.bytes > 0) {
        std::memcpy(r.data, s.data, s.bytes);
      }
      --s.group->pending;
      --r.group->pending;
      cv_.notify_all();
    }
  }

  // Takes a timed-out group's unmatched operations off the queues, so no
  // peer touches its memory later.
  void Withdraw(const Group* group) {
    for (auto& q : sends_)
      std::erase_if(q, [&](auto& p) { return p.group == group; });
    for (auto& q : recvs_)
      std::erase_if(q, [&](auto& p) { return p.group == group; });
  }

  const int world_;
  const ThreadP2pOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::deque<Posted<const std::byte*>>> sends_;
  std::vector<std::deque<Posted<std::byte*>>> recvs_;
};

namespace {

class ThreadBackend final : public P2pBackend {
 public:
  ThreadBackend(std::shared_ptr<ThreadP2pFabricImpl> fabric, int rank)
      : fabric_(std::move(fabric)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return fabric_->world(); }
  std::vector<MemoryKind> kinds() const override { return {MemoryKind::kHost}; }

  bool Exchangeable(const void* p) const override {
    if (fabric_->options().exchange_any_memory) return true;
    const auto* b = static_cast<const std::byte*>(p);
    auto it = allocations_.upper_bound(b);
    if (it == allocations_.begin()) return false;
    --it;
    return b < it->first + it->second.size();
  }

  Result<std::byte*> Allocate(uint64_t bytes) override {
    std::vector<std::byte> memory(bytes);
    std::byte* p = memory.data();
    allocations_.emplace(p, std::move(memory));
    return p;
  }
  void Free(std::byte* p) override { allocations_.erase(p); }

  Status Copy(std::span<const ConstBlock> from,
              std::span<const MutBlock> to) override {
    GatherScatter(from, to);
    return OkStatus();
  }
  Status Exchange(std::span<const P2pSend> sends,
                  std::span<const P2pRecv> recvs) override {
    return fabric_->Exchange(rank_, sends, recvs);
  }
  Status Wait() override { return OkStatus(); }

 private:
  std::shared_ptr<ThreadP2pFabricImpl> fabric_;
  int rank_;
  std::map<const std::byte*, std::vector<std::byte>> allocations_;
};

}  // namespace

ThreadP2pFabric::ThreadP2pFabric(int world_size, ThreadP2pOptions options)
    : impl_(std::make_shared<ThreadP2pFabricImpl>(world_size, options)) {}

ThreadP2pFabric::~ThreadP2pFabric() = default;

std::unique_ptr<P2pBackend> ThreadP2pFabric::Connect(int rank) {
  return std::make_unique<ThreadBackend>(impl_, rank);
}

}  // namespace refit::exec
