#include "refit/transport/embedded/embedded_copy_service.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace refit::exec {

namespace {

using Clock = std::chrono::steady_clock;

struct MessageKey {
  int src = 0;
  uint64_t task_id = 0;
  bool operator<(const MessageKey& o) const {
    return std::pair(src, task_id) < std::pair(o.src, o.task_id);
  }
};

// Sends posted to one receiving rank, and the sends of that rank still
// waiting to be consumed, by receiving rank.
struct Mailbox {
  std::mutex mu;
  std::condition_variable cv;
  std::map<MessageKey, std::vector<ConstBlock>> posted;
  // Messages their sender took back (its Run failed) before this rank took
  // them: a receiver waiting for one fails at once instead of timing out.
  std::set<MessageKey> withdrawn;
  std::map<int, uint64_t> unconsumed_to;  // receiving rank -> sends
  uint64_t unconsumed_sends = 0;
};

// "5 s" or "0.3 s".
std::string SecondsText(std::chrono::milliseconds ms) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", ms.count() / 1000.0);
  return text;
}

// "rank 2", "ranks 1, 5" or "ranks 1, 2, ..., 8, ..." (at most 8 named).
std::string RankList(const std::set<int>& ranks) {
  constexpr size_t kMaxNamed = 8;
  std::string list = ranks.size() == 1 ? "rank " : "ranks ";
  size_t named = 0;
  for (int r : ranks) {
    if (named == kMaxNamed) return list + ", ...";
    list.append(named++ > 0 ? ", " : "").append(std::to_string(r));
  }
  return list;
}

// The fabric's progress: when a message was last posted, taken or copied,
// and how many copies are in flight. A wait fails only when nothing moved
// anywhere in the fabric for the timeout and no copy is running.
class Progress {
 public:
  void Mark() {
    last_ns_.store(Clock::now().time_since_epoch().count(),
                   std::memory_order_relaxed);
  }
  void CopyStarted() {
    copying_.fetch_add(1, std::memory_order_relaxed);
    Mark();
  }
  void CopyEnded() {
    copying_.fetch_sub(1, std::memory_order_relaxed);
    Mark();
  }
  /// True when no copy runs and nothing moved for `timeout`, counting from
  /// `since` (the start of the wait) at the earliest.
  bool Stalled(std::chrono::milliseconds timeout,
               Clock::time_point since) const {
    return copying_.load(std::memory_order_relaxed) == 0 &&
           Clock::now() >= std::max(since, Last()) + timeout;
  }
  /// When a waiter should look again: when the timeout would expire, or
  /// half a timeout on while a copy runs (its end restarts the clock).
  Clock::time_point NextCheck(std::chrono::milliseconds timeout,
                              Clock::time_point since) const {
    if (copying_.load(std::memory_order_relaxed) > 0) {
      return Clock::now() + timeout / 2 + std::chrono::milliseconds(1);
    }
    return std::max(since, Last()) + timeout;
  }

 private:
  Clock::time_point Last() const {
    return Clock::time_point(
        Clock::duration(last_ns_.load(std::memory_order_relaxed)));
  }
  std::atomic<Clock::rep> last_ns_{Clock::now().time_since_epoch().count()};
  std::atomic<int> copying_{0};
};

}  // namespace

class EmbeddedFabricImpl {
 public:
  EmbeddedFabricImpl(int world, std::chrono::milliseconds timeout)
      : boxes_(world), timeout_(timeout) {}

  void Post(int src, int dst, uint64_t task, std::vector<ConstBlock> blocks) {
    {
      std::lock_guard<std::mutex> lock(boxes_[src].mu);
      ++boxes_[src].unconsumed_sends;
      ++boxes_[src].unconsumed_to[dst];
    }
    Mailbox& box = boxes_[dst];
    {
      std::lock_guard<std::mutex> lock(box.mu);
      box.withdrawn.erase({src, task});
      box.posted[{src, task}] = std::move(blocks);
    }
    progress_.Mark();
    box.cv.notify_all();
  }

  // Takes the next posted message among `wanted` (erasing it from the list).
  // Errors: kDeadlineExceeded when the fabric makes no progress for the
  // timeout before one of them is posted.
  Result<std::pair<MessageKey, std::vector<ConstBlock>>> Take(
      int dst, std::vector<MessageKey>& wanted) {
    Mailbox& box = boxes_[dst];
    std::unique_lock<std::mutex> lock(box.mu);
    size_t found = wanted.size();
    const bool ok = Wait(lock, box.cv, [&] {
      for (found = 0; found < wanted.size(); ++found) {
        if (box.posted.count(wanted[found]) > 0 ||
            box.withdrawn.count(wanted[found]) > 0) {
          return true;
        }
      }
      return false;
    });
    if (!ok) return StalledReceive(dst, wanted);
    if (box.withdrawn.erase(wanted[found]) > 0) {
      const MessageKey key = wanted[found];
      wanted.erase(wanted.begin() + found);
      return Aborted("embedded copy service: task " +
                     std::to_string(key.task_id) + " from rank " +
                     std::to_string(key.src) + " to rank " +
                     std::to_string(dst) + " was withdrawn: rank " +
                     std::to_string(key.src) + "'s run failed first");
    }
    auto it = box.posted.find(wanted[found]);
    auto out = std::pair(wanted[found], std::move(it->second));
    box.posted.erase(it);
    wanted.erase(wanted.begin() + found);
    progress_.Mark();
    return out;
  }

  void CopyStarted() { progress_.CopyStarted(); }
  void CopyEnded() { progress_.CopyEnded(); }

  // The message from `src` to `dst` was copied (or refused).
  void Consumed(int src, int dst) { Unpost(src, dst, 1); }

  // Takes back `src`'s messages that no receiver has taken and waits for the
  // copies of the taken ones to end (a copy in flight is progress, so this
  // does not give up while one runs): afterwards no receiver reads `src`'s
  // send blocks. A receiver that wants a withdrawn message fails at once.
  void Withdraw(int src) {
    for (size_t dst = 0; dst < boxes_.size(); ++dst) {
      uint64_t removed = 0;
      {
        Mailbox& box = boxes_[dst];
        std::lock_guard<std::mutex> lock(box.mu);
        removed = std::erase_if(box.posted, [&](const auto& kv) {
          if (kv.first.src != src) return false;
          box.withdrawn.insert(kv.first);
          return true;
        });
      }
      if (removed > 0) {
        boxes_[dst].cv.notify_all();
        Unpost(src, static_cast<int>(dst), removed);
      }
    }
    Mailbox& box = boxes_[src];
    std::unique_lock<std::mutex> lock(box.mu);
    Wait(lock, box.cv, [&] { return box.unconsumed_sends == 0; });
  }

  // Errors: kDeadlineExceeded when the fabric makes no progress for the
  // timeout while some of `src`'s sends are not consumed.
  Status WaitSendsConsumed(int src) {
    Mailbox& box = boxes_[src];
    std::unique_lock<std::mutex> lock(box.mu);
    if (Wait(lock, box.cv, [&] { return box.unconsumed_sends == 0; })) {
      return OkStatus();
    }
    std::set<int> receivers;
    for (const auto& [dst, n] : box.unconsumed_to) receivers.insert(dst);
    return DeadlineExceeded(
        "embedded copy service: rank " + std::to_string(src) + " waited " +
        SecondsText(timeout_) +
        " with no progress: " + std::to_string(box.unconsumed_sends) +
        " sends not taken by " + RankList(receivers));
  }

 private:
  // `n` messages from `src` to `dst` are no longer readable by `dst`.
  void Unpost(int src, int dst, uint64_t n) {
    Mailbox& box = boxes_[src];
    {
      std::lock_guard<std::mutex> lock(box.mu);
      box.unconsumed_sends -= n;
      if ((box.unconsumed_to[dst] -= n) == 0) box.unconsumed_to.erase(dst);
    }
    progress_.Mark();
    box.cv.notify_all();
  }

  // Waits on `cv` until `ready()`; false when the fabric stalls first.
  template <typename Ready>
  bool Wait(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
            Ready&& ready) {
    const Clock::time_point since = Clock::now();
    while (!ready()) {
      if (progress_.Stalled(timeout_, since)) return false;
      cv.wait_until(lock, progress_.NextCheck(timeout_, since));
    }
    return true;
  }

  Status StalledReceive(int dst, const std::vector<MessageKey>& wanted) const {
    std::string message = "embedded copy service: rank " + std::to_string(dst) +
                          " waited " + SecondsText(timeout_) +
                          " with no progress for task " +
                          std::to_string(wanted[0].task_id) + " from rank " +
                          std::to_string(wanted[0].src);
    if (wanted.size() > 1) {
      std::set<int> others;
      for (size_t i = 1; i < wanted.size(); ++i) others.insert(wanted[i].src);
      message += " (and " + std::to_string(wanted.size() - 1) + " more from " +
                 RankList(others) + ")";
    }
    return DeadlineExceeded(std::move(message));
  }

  std::vector<Mailbox> boxes_;
  std::chrono::milliseconds timeout_;
  Progress progress_;
};

namespace {

class EmbeddedCopyService : public CopyService {
 public:
  EmbeddedCopyService(std::shared_ptr<EmbeddedFabricImpl> fabric, int rank,
                      std::unique_ptr<BlockMover> mover)
      : fabric_(std::move(fabric)), rank_(rank), mover_(std::move(mover)) {}

  int rank() const override { return rank_; }

  // The mover's memory kinds (the receiver copies with it), straight from
  // the sender's blocks into the receiver's: no staging, no size limit.
  TransportCapabilities capabilities() const override {
    TransportCapabilities caps;
    caps.reads = caps.writes = mover_->kinds();
    caps.receives_in_place = true;
    caps.max_message_bytes = UINT64_MAX;
    caps.max_staging_bytes = 0;
    return caps;
  }

  Status SubmitSend(int dst_rank, uint64_t task_id,
                    std::vector<ConstBlock> blocks) override {
    if (closed_) return FailedPrecondition("embedded copy service closed");
    sends_.push_back({dst_rank, task_id, std::move(blocks)});
    return OkStatus();
  }

  Status SubmitRecv(int src_rank, uint64_t task_id,
                    std::vector<MutBlock> blocks) override {
    if (closed_) return FailedPrecondition("embedded copy service closed");
    recvs_[{src_rank, task_id}] = std::move(blocks);
    return OkStatus();
  }

  Status Run() override {
    if (closed_) return FailedPrecondition("embedded copy service closed");
    for (Send& s : sends_) {
      fabric_->Post(rank_, s.dst, s.task_id, std::move(s.blocks));
    }
    sends_.clear();
    Status st = ReceiveAll();
    recvs_.clear();
    if (st.ok()) st = fabric_->WaitSendsConsumed(rank_);
    // Receivers read the send blocks in place: after a failure the caller
    // may free them once Run returns, so no receiver may still hold them.
    if (!st.ok()) fabric_->Withdraw(rank_);
    return st;
  }

  Status CopyLocal(std::span<const ConstBlock> from,
                   std::span<const MutBlock> to) override {
    return mover_->Move(from, to);
  }

  // A receiver reads its senders' tensors on its own copy stream, so each
  // rank's caller stream must be done before the rank posts anything: the
  // mover waits for it on the host.
  Status OrderAfter(uintptr_t cuda_stream) override {
    return mover_->OrderAfter(cuda_stream);
  }

  Status Close() override {
    closed_ = true;
    return OkStatus();
  }

 private:
  struct Send {
    int dst;
    uint64_t task_id;
    std::vector<ConstBlock> blocks;
  };

  // Takes and copies every submitted receive. A message of the wrong size is
  // refused (its sender is released) and reported once the others are in,
  // as is a message its sender withdrew.
  Status ReceiveAll() {
    std::vector<MessageKey> wanted;
    for (const auto& [key, blocks] : recvs_) wanted.push_back(key);
    Status first_error;
    while (!wanted.empty()) {
      auto msg = fabric_->Take(rank_, wanted);
      if (!msg.ok()) {
        // A withdrawn message: take the others, so their senders go on.
        if (msg.status().code() == StatusCode::kDeadlineExceeded) {
          return msg.status();
        }
        if (first_error.ok()) first_error = msg.status();
        continue;
      }
      Status st = Copy(msg->first, msg->second);
      fabric_->Consumed(msg->first.src, rank_);
      if (first_error.ok()) first_error = std::move(st);
    }
    return first_error;
  }

  // Copies one taken message into its receive blocks.
  Status Copy(const MessageKey& key, const std::vector<ConstBlock>& from) {
    const std::vector<MutBlock>& to = recvs_[key];
    const uint64_t sent = TotalBytes(from);
    const uint64_t expected = TotalBytes(to);
    if (sent != expected) {
      return FailedPrecondition(
          "embedded copy service: task " + std::to_string(key.task_id) +
          " from rank " + std::to_string(key.src) + " to rank " +
          std::to_string(rank_) + " carries " + std::to_string(sent) +
          " bytes, receiver expects " + std::to_string(expected));
    }
    fabric_->CopyStarted();
    Status st = mover_->Move(from, to);
    fabric_->CopyEnded();
    return st;
  }

  std::shared_ptr<EmbeddedFabricImpl> fabric_;
  int rank_;
  bool closed_ = false;
  std::vector<Send> sends_;
  std::map<MessageKey, std::vector<MutBlock>> recvs_;
  std::unique_ptr<BlockMover> mover_;
};

}  // namespace

EmbeddedFabric::EmbeddedFabric(int world_size,
                               std::chrono::milliseconds timeout,
                               MoverFactory mover)
    : impl_(std::make_shared<EmbeddedFabricImpl>(world_size, timeout)),
      mover_(std::move(mover)) {}

EmbeddedFabric::~EmbeddedFabric() = default;

std::unique_ptr<CopyService> EmbeddedFabric::Connect(int rank) {
  return std::make_unique<EmbeddedCopyService>(impl_, rank, mover_());
}

}  // namespace refit::exec
