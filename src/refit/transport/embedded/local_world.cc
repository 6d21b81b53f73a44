#include "refit/local_world.h"

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "refit/transport/embedded/embedded_copy_service.h"

namespace refit {

namespace {

using Clock = std::chrono::steady_clock;

// The all-gather of a group of threads: one slot per rank, completed when
// every rank arrived; a rank gives up when no rank arrived for the timeout.
class ThreadGather {
 public:
  ThreadGather(int n, std::chrono::milliseconds timeout)
      : timeout_(timeout), slots_(n), present_(n, false) {}

  Result<std::vector<std::string>> Run(int rank, std::string_view mine) {
    std::unique_lock<std::mutex> lock(mu_);
    if (broken_) return Broken(rank);
    const uint64_t gen = generation_;
    slots_[rank] = mine;
    present_[rank] = true;
    last_arrival_ = Clock::now();
    if (++arrived_ == static_cast<int>(slots_.size())) {
      result_ = slots_;
      arrived_ = 0;
      present_.assign(present_.size(), false);
      ++generation_;
      cv_.notify_all();
      return result_;
    }
    while (generation_ == gen) {
      if (cv_.wait_until(lock, last_arrival_ + timeout_) ==
              std::cv_status::timeout &&
          generation_ == gen && Clock::now() >= last_arrival_ + timeout_) {
        broken_ = true;
        return Missing(rank);
      }
    }
    return result_;
  }

 private:
  Status Missing(int rank) const {
    std::string who;
    for (size_t r = 0; r < present_.size(); ++r) {
      if (present_[r]) continue;
      who += (who.empty() ? "" : ", ") + std::to_string(r);
    }
    return DeadlineExceeded("local world: rank " + std::to_string(rank) +
                            " waited " + std::to_string(timeout_.count()) +
                            " ms with no progress for ranks " + who);
  }
  Status Broken(int rank) const {
    return DeadlineExceeded("local world: rank " + std::to_string(rank) +
                            ": an earlier collective timed out");
  }

  std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> slots_, result_;
  std::vector<bool> present_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool broken_ = false;
  Clock::time_point last_arrival_;
};

class LocalCommunicator final : public Communicator {
 public:
  LocalCommunicator(int rank, int size, std::chrono::milliseconds timeout,
                    ThreadGather* gather, exec::EmbeddedFabric* fabric)
      : rank_(rank),
        size_(size),
        timeout_(timeout),
        gather_(gather),
        fabric_(fabric) {}

  std::string_view method() const override { return "local"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool shares_process() const override { return true; }
  std::chrono::milliseconds timeout() const override { return timeout_; }
  Result<std::vector<std::string>> AllGather(std::string_view mine) override {
    return gather_->Run(rank_, mine);
  }
  Result<std::unique_ptr<exec::CopyService>> CreateCopyService() override {
    return fabric_->Connect(rank_);
  }

 private:
  int rank_, size_;
  std::chrono::milliseconds timeout_;
  ThreadGather* gather_;
  exec::EmbeddedFabric* fabric_;
};

// One thread per rank, kept between ForEachRank calls.
class RankThreads {
 public:
  explicit RankThreads(int n) : statuses_(n) {
    for (int r = 0; r < n; ++r) threads_.emplace_back([this, r] { Loop(r); });
  }
  ~RankThreads() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  std::vector<Status> Run(const std::function<Status(int)>& body) {
    std::unique_lock<std::mutex> lock(mu_);
    body_ = &body;
    pending_ = static_cast<int>(threads_.size());
    ++job_;
    cv_.notify_all();
    done_cv_.wait(lock, [&] { return pending_ == 0; });
    body_ = nullptr;
    return statuses_;
  }

 private:
  void Loop(int r) {
    uint64_t seen = 0;
    while (true) {
      const std::function<Status(int)>* body;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || job_ != seen; });
        if (stop_) return;
        seen = job_;
        body = body_;
      }
      Status st = (*body)(r);
      std::lock_guard<std::mutex> lock(mu_);
      statuses_[r] = std::move(st);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> threads_;
  std::vector<Status> statuses_;
  const std::function<Status(int)>* body_ = nullptr;
  uint64_t job_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

}  // namespace

struct LocalWorld::Impl {
  Impl(int n, const LocalWorldOptions& o)
      : gather(n, o.timeout),
        fabric(n, o.timeout,
               o.memory == MemoryKind::kCuda ? exec::CudaBlockMover
                                             : exec::HostBlockMover) {
    for (int r = 0; r < n; ++r) {
      ranks.push_back(std::make_unique<LocalCommunicator>(r, n, o.timeout,
                                                          &gather, &fabric));
    }
  }
  ThreadGather gather;
  exec::EmbeddedFabric fabric;
  std::vector<std::unique_ptr<LocalCommunicator>> ranks;
  std::unique_ptr<RankThreads> threads;  // started on first use
};

LocalWorld::LocalWorld(int world_size, LocalWorldOptions options)
    : impl_(std::make_unique<Impl>(world_size < 1 ? 1 : world_size, options)) {}

LocalWorld::~LocalWorld() = default;

int LocalWorld::size() const { return static_cast<int>(impl_->ranks.size()); }

Communicator& LocalWorld::rank(int r) { return *impl_->ranks.at(r); }

std::vector<Status> LocalWorld::ForEachRank(
    const std::function<Status(int)>& body) {
  if (!impl_->threads) impl_->threads = std::make_unique<RankThreads>(size());
  return impl_->threads->Run(body);
}

}  // namespace refit
