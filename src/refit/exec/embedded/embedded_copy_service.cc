#include "refit/exec/embedded/embedded_copy_service.h"

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace refit::exec {

namespace {

struct MessageKey {
  int src = 0;
  uint64_t task_id = 0;
  bool operator<(const MessageKey& o) const {
    return std::pair(src, task_id) < std::pair(o.src, o.task_id);
  }
};

// Sends posted to one receiving rank, and the sends of that rank still
// waiting to be consumed.
struct Mailbox {
  std::mutex mu;
  std::condition_variable cv;
  std::map<MessageKey, std::vector<ConstBlock>> posted;
  uint64_t unconsumed_sends = 0;
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
    }
    Mailbox& box = boxes_[dst];
    {
      std::lock_guard<std::mutex> lock(box.mu);
      box.posted[{src, task}] = std::move(blocks);
    }
    box.cv.notify_all();
  }

  // Takes the next posted message among `wanted` (erasing it from the list).
  Result<std::pair<MessageKey, std::vector<ConstBlock>>> Take(
      int dst, std::vector<MessageKey>& wanted) {
    Mailbox& box = boxes_[dst];
    std::unique_lock<std::mutex> lock(box.mu);
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    while (true) {
      for (size_t i = 0; i < wanted.size(); ++i) {
        auto it = box.posted.find(wanted[i]);
        if (it == box.posted.end()) continue;
        auto out = std::pair(wanted[i], std::move(it->second));
        box.posted.erase(it);
        wanted.erase(wanted.begin() + i);
        return out;
      }
      if (box.cv.wait_until(lock, deadline) == std::cv_status::timeout) {
        return FailedPrecondition(
            "embedded copy service: rank " + std::to_string(dst) + " waited " +
            std::to_string(timeout_.count()) + " ms for task " +
            std::to_string(wanted[0].task_id) + " from rank " +
            std::to_string(wanted[0].src));
      }
    }
  }

  void Consumed(int src) {
    Mailbox& box = boxes_[src];
    {
      std::lock_guard<std::mutex> lock(box.mu);
      --box.unconsumed_sends;
    }
    box.cv.notify_all();
  }

  Status WaitSendsConsumed(int src) {
    Mailbox& box = boxes_[src];
    std::unique_lock<std::mutex> lock(box.mu);
    if (!box.cv.wait_for(lock, timeout_,
                         [&] { return box.unconsumed_sends == 0; })) {
      return FailedPrecondition("embedded copy service: rank " +
                                std::to_string(src) + " has " +
                                std::to_string(box.unconsumed_sends) +
                                " sends no receiver took within " +
                                std::to_string(timeout_.count()) + " ms");
    }
    return OkStatus();
  }

 private:
  std::vector<Mailbox> boxes_;
  std::chrono::milliseconds timeout_;
};

namespace {

class EmbeddedCopyService : public CopyService {
 public:
  EmbeddedCopyService(std::shared_ptr<EmbeddedFabricImpl> fabric, int rank)
      : fabric_(std::move(fabric)), rank_(rank) {}

  int rank() const override { return rank_; }

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
    REFIT_RETURN_IF_ERROR(st);
    return fabric_->WaitSendsConsumed(rank_);
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

  Status ReceiveAll() {
    std::vector<MessageKey> wanted;
    for (const auto& [key, blocks] : recvs_) wanted.push_back(key);
    while (!wanted.empty()) {
      REFIT_ASSIGN_OR_RETURN(auto msg, fabric_->Take(rank_, wanted));
      const std::vector<MutBlock>& to = recvs_[msg.first];
      const uint64_t sent = TotalBytes(msg.second);
      const uint64_t expected = TotalBytes(to);
      if (sent == expected) GatherScatter(msg.second, to);
      fabric_->Consumed(msg.first.src);
      if (sent != expected) {
        return FailedPrecondition(
            "embedded copy service: task " + std::to_string(msg.first.task_id) +
            " from rank " + std::to_string(msg.first.src) + " to rank " +
            std::to_string(rank_) + " carries " + std::to_string(sent) +
            " bytes, receiver expects " + std::to_string(expected));
      }
    }
    return OkStatus();
  }

  std::shared_ptr<EmbeddedFabricImpl> fabric_;
  int rank_;
  bool closed_ = false;
  std::vector<Send> sends_;
  std::map<MessageKey, std::vector<MutBlock>> recvs_;
};

}  // namespace

EmbeddedFabric::EmbeddedFabric(int world_size,
                               std::chrono::milliseconds timeout)
    : impl_(std::make_shared<EmbeddedFabricImpl>(world_size, timeout)) {}

EmbeddedFabric::~EmbeddedFabric() = default;

std::unique_ptr<CopyService> EmbeddedFabric::Connect(int rank) {
  return std::make_unique<EmbeddedCopyService>(impl_, rank);
}

}  // namespace refit::exec
