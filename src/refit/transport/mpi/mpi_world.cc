#include "refit/transport/mpi/mpi_world.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <limits>
#include <numeric>

#include "refit/transport/mpi/mpi_internal.h"

namespace refit::exec {

namespace {

using internal::MpiError;
using internal::Seconds;

// "rank 2" or "ranks 1, 2".
std::string RankList(const std::vector<int>& ranks) {
  std::string list = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) {
    list.append(i > 0 ? ", " : "").append(std::to_string(ranks[i]));
  }
  return list;
}

// Round `round`'s counts and displacements of AllToAllV for messages of
// `counts` bytes, at most `round_bytes` per pair; returns the round's total.
int RoundCounts(std::span<const uint64_t> counts, uint64_t round,
                uint64_t round_bytes, std::vector<int>& round_counts,
                std::vector<int>& displs) {
  int total = 0;
  for (size_t p = 0; p < counts.size(); ++p) {
    const uint64_t done = std::min(counts[p], round * round_bytes);
    round_counts[p] = static_cast<int>(std::min(counts[p] - done, round_bytes));
    displs[p] = total;
    total += round_counts[p];
  }
  return total;
}

// Errors: kInvalidArgument when `counts` are not `size` counts of at most
// `max_count` that fit `buffer_bytes`.
Status CheckCounts(std::span<const uint64_t> counts, int size,
                   uint64_t max_count, size_t buffer_bytes,
                   std::string_view name) {
  if (counts.size() != static_cast<size_t>(size)) {
    return InvalidArgument(std::string(name) + ": " +
                           std::to_string(counts.size()) + " counts for " +
                           std::to_string(size) + " ranks");
  }
  uint64_t total = 0;
  for (uint64_t c : counts) {
    if (c > max_count) {
      return InvalidArgument(std::string(name) + ": count " +
                             std::to_string(c) + " exceeds max_count " +
                             std::to_string(max_count));
    }
    total += c;
  }
  if (total > buffer_bytes) {
    return InvalidArgument(std::string(name) + ": " + std::to_string(total) +
                           " bytes do not fit the buffer of " +
                           std::to_string(buffer_bytes));
  }
  return OkStatus();
}

// Whether MPI is initialised. Errors: kFailedPrecondition once it is
// finalized (it cannot start again).
Result<bool> MpiInitialised() {
  int initialised = 0, finalized = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalized);
  if (finalized) {
    return FailedPrecondition("MPI world: MPI is finalized already");
  }
  return initialised != 0;
}

}  // namespace

struct MpiWorld::Impl {
  MPI_Comm comm = MPI_COMM_NULL;  // private duplicate of the given one
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{0};
  bool broken = false;
  bool owns_mpi = false;  // MPI initialised by Init: finalize it at the end

  std::string Name() const { return "rank " + std::to_string(rank); }

  // The world of `comm`'s processes, on a private duplicate of it.
  static Result<std::unique_ptr<MpiWorld>> Wrap(
      MPI_Comm comm, std::chrono::milliseconds timeout, bool owns_mpi) {
    if (comm == MPI_COMM_NULL) {
      return InvalidArgument("MPI world: the communicator is MPI_COMM_NULL");
    }
    auto impl = std::make_unique<Impl>();
    impl->timeout = timeout;
    int rc = MPI_Comm_rank(comm, &impl->rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(comm, &impl->size);
    if (rc != MPI_SUCCESS) return MpiError(rc, "MPI world: the communicator");
    impl->owns_mpi = owns_mpi;
    std::unique_ptr<MpiWorld> world(new MpiWorld(std::move(impl)));
    Impl& w = *world->impl_;
    Result<MPI_Comm> dup =
        internal::DupComm(comm, timeout, w.Name() + ": MPI start-up");
    if (!dup.ok()) {
      w.broken = true;  // peers may be stuck in the duplication
      return dup.status();
    }
    w.comm = *dup;
    return world;
  }

  // Waits for one collective request; a failure breaks the world.
  Status Wait(MPI_Request& request, std::string_view step) {
    const std::string context = Name() + ": " + std::string(step);
    Status st = internal::WaitAll(
        {&request, 1}, timeout, context, [&](std::span<const int>) {
          return Name() + " waited " + Seconds(timeout) +
                 " for the other ranks while " + std::string(step);
        });
    broken = broken || !st.ok();
    return st;
  }

  // Posts a nonblocking collective with `post` and waits for it.
  template <typename Post>
  Status Collective(std::string_view step, Post&& post) {
    MPI_Request request = MPI_REQUEST_NULL;
    const int rc = post(&request);
    if (rc != MPI_SUCCESS) {
      broken = true;
      return MpiError(rc, Name() + ": " + std::string(step));
    }
    return Wait(request, step);
  }
};

int MpiWorld::LaunchSize() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    if (const char* value = std::getenv(name)) return std::atoi(value);
  }
  return 0;
}

MpiWorld::MpiWorld(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MpiWorld::~MpiWorld() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (impl_->broken || finalized) return;
  if (impl_->comm != MPI_COMM_NULL) MPI_Comm_free(&impl_->comm);
  if (impl_->owns_mpi) MPI_Finalize();
}

Result<std::unique_ptr<MpiWorld>> MpiWorld::Init(
    std::chrono::milliseconds timeout) {
  REFIT_ASSIGN_OR_RETURN(const bool initialised, MpiInitialised());
  if (!initialised) {
    int provided = 0;
    const int rc =
        MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return MpiError(rc, "MPI_Init_thread");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  REFIT_ASSIGN_OR_RETURN(
      std::unique_ptr<MpiWorld> world,
      Impl::Wrap(MPI_COMM_WORLD, timeout, /*owns_mpi=*/!initialised));
  const int launched = LaunchSize();
  if (launched > 0 && launched != world->size()) {
    return FailedPrecondition(
        "the MPI launcher started " + std::to_string(launched) +
        " processes but MPI_COMM_WORLD has " + std::to_string(world->size()) +
        " (is refit built against the MPI of this mpirun?)");
  }
  return world;
}

Result<std::unique_ptr<MpiWorld>> MpiWorld::FromComm(
    MpiCommHandle comm, std::chrono::milliseconds timeout) {
  REFIT_ASSIGN_OR_RETURN(const bool initialised, MpiInitialised());
  if (!initialised) {
    return FailedPrecondition(
        "MPI world: MPI is not initialised (the caller initialises it before "
        "passing a communicator)");
  }
  if (comm.fortran < std::numeric_limits<MPI_Fint>::min() ||
      comm.fortran > std::numeric_limits<MPI_Fint>::max()) {
    return InvalidArgument("MPI world: " + std::to_string(comm.fortran) +
                           " is not a Fortran communicator handle");
  }
  return Impl::Wrap(MPI_Comm_f2c(static_cast<MPI_Fint>(comm.fortran)), timeout,
                    /*owns_mpi=*/false);
}

int MpiWorld::rank() const { return impl_->rank; }
int MpiWorld::size() const { return impl_->size; }
MpiCommHandle MpiWorld::comm() const {
  return {static_cast<int64_t>(MPI_Comm_c2f(impl_->comm))};
}
std::chrono::milliseconds MpiWorld::timeout() const { return impl_->timeout; }
bool MpiWorld::broken() const { return impl_->broken; }

Result<std::vector<std::string>> MpiWorld::AllGather(std::string_view mine,
                                                     std::string_view step) {
  Impl& w = *impl_;
  // Point to point, so that a timeout names the ranks that did not answer:
  // first every rank's length, then every rank's bytes.
  const uint64_t length = mine.size();
  std::vector<uint64_t> lengths(w.size, 0);
  std::vector<Exchanged> round(w.size);
  for (int p = 0; p < w.size; ++p) {
    round[p] = {&length, sizeof(uint64_t), &lengths[p], sizeof(uint64_t)};
  }
  REFIT_RETURN_IF_ERROR(Exchange(step, round));
  std::vector<std::string> out(w.size);
  for (int p = 0; p < w.size; ++p) {
    out[p].resize(p == w.rank ? 0 : lengths[p]);
    round[p] = {mine.data(), length, out[p].data(), out[p].size()};
  }
  REFIT_RETURN_IF_ERROR(Exchange(step, round));
  out[w.rank] = std::string(mine);
  return out;
}

Status MpiWorld::Barrier(std::string_view step) {
  return Exchange(step, std::vector<Exchanged>(impl_->size));
}

Status MpiWorld::Exchange(std::string_view step,
                          std::span<const Exchanged> with) {
  Impl& w = *impl_;
  std::vector<int> peers;
  for (int p = 0; p < w.size; ++p) {
    if (p != w.rank) peers.push_back(p);
  }
  const int n = static_cast<int>(peers.size());
  // requests[i]: the message from peers[i]; requests[n + i]: the one to it.
  std::vector<MPI_Request> requests(2 * n, MPI_REQUEST_NULL);
  const std::string context = w.Name() + ": " + std::string(step);
  for (int i = 0; i < n; ++i) {
    const Exchanged& x = with[peers[i]];
    int rc = MPI_Irecv(x.recv, static_cast<int>(x.recv_bytes), MPI_BYTE,
                       peers[i], 0, w.comm, &requests[i]);
    if (rc == MPI_SUCCESS) {
      rc = MPI_Isend(x.send, static_cast<int>(x.send_bytes), MPI_BYTE, peers[i],
                     0, w.comm, &requests[n + i]);
    }
    if (rc != MPI_SUCCESS) {
      w.broken = true;
      return MpiError(rc, context);
    }
  }
  Status st = internal::WaitAll(
      requests, w.timeout, context, [&](std::span<const int> pending) {
        // The peers whose message has not come; else those not taking ours.
        std::vector<int> missing;
        for (int i : pending) {
          if (i < n) missing.push_back(peers[i]);
        }
        if (missing.empty()) {
          for (int i : pending) missing.push_back(peers[i - n]);
        }
        return w.Name() + " waited " + Seconds(w.timeout) + " " +
               std::string(step) + " for " + RankList(missing);
      });
  w.broken = w.broken || !st.ok();
  return st;
}

Status MpiWorld::AllReduceMax(std::span<double> values, std::string_view step) {
  return impl_->Collective(step, [&](MPI_Request* r) {
    return MPI_Iallreduce(MPI_IN_PLACE, values.data(),
                          static_cast<int>(values.size()), MPI_DOUBLE, MPI_MAX,
                          impl_->comm, r);
  });
}

Status MpiWorld::AllReduceSum(std::span<uint64_t> values,
                              std::string_view step) {
  return impl_->Collective(step, [&](MPI_Request* r) {
    return MPI_Iallreduce(MPI_IN_PLACE, values.data(),
                          static_cast<int>(values.size()), MPI_UINT64_T,
                          MPI_SUM, impl_->comm, r);
  });
}

Status MpiWorld::AllToAllV(std::span<const std::byte> send,
                           std::span<const uint64_t> send_counts,
                           std::span<std::byte> recv,
                           std::span<const uint64_t> recv_counts,
                           uint64_t max_count, std::string_view step) {
  Impl& w = *impl_;
  REFIT_RETURN_IF_ERROR(
      CheckCounts(send_counts, w.size, max_count, send.size(), "send"));
  REFIT_RETURN_IF_ERROR(
      CheckCounts(recv_counts, w.size, max_count, recv.size(), "recv"));
  const uint64_t round_bytes = AllToAllRoundBytes();
  const uint64_t rounds =
      std::max<uint64_t>(1, (max_count + round_bytes - 1) / round_bytes);
  std::vector<int> sc(w.size), sd(w.size), rc(w.size), rd(w.size);
  size_t send_at = 0;
  size_t recv_at = 0;
  for (uint64_t round = 0; round < rounds; ++round) {
    const int send_total = RoundCounts(send_counts, round, round_bytes, sc, sd);
    const int recv_total = RoundCounts(recv_counts, round, round_bytes, rc, rd);
    REFIT_RETURN_IF_ERROR(w.Collective(step, [&](MPI_Request* r) {
      return MPI_Ialltoallv(send.data() + send_at, sc.data(), sd.data(),
                            MPI_BYTE, recv.data() + recv_at, rc.data(),
                            rd.data(), MPI_BYTE, w.comm, r);
    }));
    send_at += send_total;
    recv_at += recv_total;
  }
  return OkStatus();
}

uint64_t MpiWorld::AllToAllRoundBytes() const {
  return INT_MAX / static_cast<uint64_t>(impl_->size);
}

void MpiWorld::Abort(int exit_code) {
  MPI_Abort(impl_->comm, exit_code);
  std::_Exit(exit_code);
}

}  // namespace refit::exec
