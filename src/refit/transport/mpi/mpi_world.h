// This process's place in a multi-process refit: the processes of one MPI
// communicator, either MPI_COMM_WORLD of a job started by an MPI launcher
// (mpirun; Init starts MPI) or a communicator the caller already has
// (FromComm), and the few collectives the job needs. Every collective gives
// up after a timeout instead of waiting forever for a peer that stopped
// answering.
#ifndef REFIT_TRANSPORT_MPI_MPI_WORLD_H_
#define REFIT_TRANSPORT_MPI_MPI_WORLD_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "refit/core/status.h"
#include "refit/mpi_comm_handle.h"

namespace refit::exec {

class MpiWorld {
 public:
  /// Number of processes the MPI launcher started, from its environment
  /// (Open MPI's OMPI_COMM_WORLD_SIZE, else PMI_SIZE of MPICH and Slurm);
  /// 0 when no launcher started this process.
  static int LaunchSize();

  /// The world of MPI_COMM_WORLD. Initialises MPI (MPI_THREAD_FUNNELED) unless
  /// it is initialised already, and then finalizes it on destruction.
  /// Collective over MPI_COMM_WORLD. `timeout`: how long a collective waits
  /// without progress before it fails.
  /// Errors: kFailedPrecondition when MPI's world is not the size the
  /// launcher reports (refit built against another MPI than the launcher's)
  /// or MPI is finalized; kDeadlineExceeded when the other processes do not
  /// join within the timeout; kIoError for MPI errors.
  static Result<std::unique_ptr<MpiWorld>> Init(
      std::chrono::milliseconds timeout);

  /// The world of the processes of `comm`, a communicator the caller already
  /// has (MPI initialised by the caller, e.g. mpi4py): rank() and size() are
  /// `comm`'s, and every communication runs on private duplicates of it.
  /// Never initialises nor finalizes MPI, and leaves `comm` as it is; destroy
  /// the world before the caller finalizes MPI. Collective over `comm`.
  /// `timeout` as for Init.
  /// Errors: kFailedPrecondition when MPI is not initialised or already
  /// finalized; kInvalidArgument for MPI_COMM_NULL; kDeadlineExceeded when the
  /// other processes of `comm` do not join within the timeout; kIoError for
  /// MPI errors.
  static Result<std::unique_ptr<MpiWorld>> FromComm(
      MpiCommHandle comm, std::chrono::milliseconds timeout);

  /// Frees the world's communicator and, when Init initialised MPI,
  /// finalizes it; neither when a collective failed (peers may be gone:
  /// Abort).
  ~MpiWorld();
  MpiWorld(const MpiWorld&) = delete;
  MpiWorld& operator=(const MpiWorld&) = delete;

  /// This process's rank in the world's communicator, and its size.
  int rank() const;
  int size() const;
  /// The world's private duplicate of its communicator (what the copy
  /// service duplicates). Valid while the world lives.
  MpiCommHandle comm() const;
  /// How long a collective waits without progress before it fails.
  std::chrono::milliseconds timeout() const;
  /// True after a collective failed: peers may wait for this rank forever,
  /// so the job must end with Abort.
  bool broken() const;

  /// Every rank's `mine`, indexed by rank (point to point: a timeout names
  /// the ranks not heard from). `step` names the call in errors.
  /// Errors (all of this file's collectives): kDeadlineExceeded naming this
  /// rank and `step` when the peers make no progress for the timeout;
  /// kIoError for MPI errors.
  Result<std::vector<std::string>> AllGather(std::string_view mine,
                                             std::string_view step);

  /// Returns once every rank has entered the barrier. Each rank sends every
  /// other a zero-byte token, so a timeout names the ranks that did not come.
  Status Barrier(std::string_view step);

  /// Element-wise maximum / sum over all ranks, in place; every rank passes
  /// as many values.
  Status AllReduceMax(std::span<double> values, std::string_view step);
  Status AllReduceSum(std::span<uint64_t> values, std::string_view step);

  /// MPI_Alltoallv of bytes: sends send_counts[p] bytes of `send` to each
  /// rank p and receives recv_counts[p] bytes from it into `recv`. MPI 3
  /// counts and displacements are ints, so the exchange runs in rounds of at
  /// most AllToAllRoundBytes() per pair: round k moves bytes
  /// [k * R, (k + 1) * R) of every pair's message, and both buffers hold the
  /// rounds one after the other, each round's pieces back to back in rank
  /// order (with counts up to R: one round, plain rank order). `max_count`,
  /// the largest count any rank passes, must be alike on every rank: it sets
  /// the number of rounds.
  /// Errors: kInvalidArgument (before any communication) when the counts are
  /// not one per rank, exceed `max_count` or do not fit the buffers.
  Status AllToAllV(std::span<const std::byte> send,
                   std::span<const uint64_t> send_counts,
                   std::span<std::byte> recv,
                   std::span<const uint64_t> recv_counts, uint64_t max_count,
                   std::string_view step);

  /// The most bytes AllToAllV moves per pair in one round: INT_MAX / size(),
  /// so that a round's displacements fit an int too.
  uint64_t AllToAllRoundBytes() const;

  /// Ends every process of the world's communicator with `exit_code`
  /// (MPI_Abort on it; Open MPI and MPICH end the whole job).
  [[noreturn]] void Abort(int exit_code);

 private:
  /// What this rank sends one peer and receives from it (at most INT_MAX
  /// bytes each way).
  struct Exchanged {
    const void* send = nullptr;
    uint64_t send_bytes = 0;
    void* recv = nullptr;
    uint64_t recv_bytes = 0;
  };
  /// Sends with[p] to and receives it from every other rank p, point to
  /// point, so that a timeout names the ranks that did not answer.
  Status Exchange(std::string_view step, std::span<const Exchanged> with);

  struct Impl;
  explicit MpiWorld(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_MPI_MPI_WORLD_H_
