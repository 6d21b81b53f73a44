// The main job as one process of a multi-process refit: mpirun starts one
// process per rank, and each builds only its own shards (reading only its
// bytes of the memory-mapped checkpoint) and its own part of the plan
// (BuildRankReshardPlan: no central planner). The ranks first agree on their
// inputs in one all-gather, then refit over the MPI copy service, time it and
// check their destination shards byte for byte against the checkpoint.
#ifndef REFIT_JOB_MPI_MPI_REFIT_JOB_H_
#define REFIT_JOB_MPI_MPI_REFIT_JOB_H_

#include <cstdint>
#include <string>

#include "refit/checkpoint/checkpoint_shards.h"
#include "refit/core/format/dst_format.h"
#include "refit/core/planner.h"
#include "refit/job/refit_job.h"
#include "refit/transport/mpi/mpi_copy_service.h"
#include "refit/transport/mpi/mpi_world.h"

namespace refit::exec {

/// What every rank must have alike, as one line: the model's SpecFingerprint,
/// both layouts, their rank ranges and the world size.
std::string InputsRecord(const ModelSpec& spec, const RefitTopology& topo);

/// Shares every rank's inputs in one all-gather. `mine` is this rank's
/// InputsRecord, or the error it got reading its inputs (a missing file, a
/// layout that does not divide). Returns on every rank alike, so that all
/// ranks can end normally together:
/// Errors: the lowest failing rank's error as "rank R: <message>", with its
/// code; kFailedPrecondition "rank R's inputs differ from rank 0's: ..." when
/// records differ. Also this rank's own collective errors (world.broken()
/// is then true: end the job with Abort).
Status AgreeOnInputs(MpiWorld& world, const Result<std::string>& mine);

struct MpiRefitOptions {
  int iters = 5;  ///< timed refits after one warm-up refit
  /// Also time MPI_Alltoallv of the same per-pair bytes (one warm-up, then
  /// `iters` timed).
  bool baseline = false;
  /// Destination formats (ResolveFormats over the same spec and topology;
  /// the plan must be built with formats->plan_options()). nullptr: every
  /// destination shard is a copy of the source's.
  const FormatPlan* formats = nullptr;
  /// What `formats` was resolved from: the refit's transform (used when
  /// formats is set).
  PrecisionOptions precision;
  /// If set, and no rank found a wrong shard, every destination rank writes
  /// DIR/rank-NNNNN.safetensors (SaveRankFile, NNNNN its global rank).
  std::string save_dir;
  MpiCopyOptions copy;
  /// Node fan-out of the refits (SwapOptions::fanout_gpus_per_node); 0 off.
  /// The plan must be built with the same value.
  int fanout_gpus_per_node = 0;
  /// Integrity checks of the refits' messages (SwapOptions::verify).
  VerifyMode verify = VerifyMode::kAuto;
  /// All-or-nothing refits through a shadow copy (SwapOptions::atomic).
  bool atomic = false;
  /// Also checks this rank's destination tensors by name after the first
  /// and the last refit (RefitJobOptions::dst_check); unset: no such check.
  DstTensorCheck dst_check;
};

struct MpiRefitReport {
  /// Over all ranks: wrong shards summed (and dst_check's tensors checked
  /// and found wrong); refit_ms[i] is the slowest rank's
  /// time for timed refit i; gbps from the bytes below; saved_files every
  /// destination rank's file, in rank order; transform_staging_bytes the
  /// largest rank's.
  RefitJobReport job;
  uint64_t bytes_remote = 0;  ///< the whole plan's, summed over senders
  uint64_t bytes_local = 0;
  uint64_t bytes_forwarded = 0;  ///< node fan-out, summed over leaders
  uint64_t messages = 0;
  /// Bytes on the wire after sender-side conversion (WireBytes of every
  /// piece of every remote op, summed over senders).
  uint64_t bytes_wire = 0;
  /// With save_dir: the lowest failing destination rank's error writing its
  /// file, as "rank R: <message>" (alike on every rank; the other ranks'
  /// files are written). The job may end normally after it.
  Status save;
  double plan_ms = 0;  ///< the slowest rank's planning time
  /// Baseline only: the median over the timed MPI_Alltoallv of the slowest
  /// rank's time.
  double alltoallv_ms_median = 0;
};

/// Runs this process's rank (its rank in `world`, in `topo`): builds its
/// source and destination tensors (in the destination formats), opens the MPI
/// copy service, then runs one warm-up and `options.iters` timed refits of
/// `plan` (this rank's BuildRankReshardPlan, which took it `plan_ms`), each
/// after a barrier, converting through a FormatTransform when the formats
/// convert, and checks its destination tensors after the first and the last
/// refit against the checkpoint converted directly (MarkWrongDstShards). When
/// no rank found a wrong shard, saves them (options.save_dir). With
/// options.baseline it then times MPI_Alltoallv the same way over the same
/// byte matrix: each rank sends every rank the bytes its ops move to it,
/// itself included (its local copies), from buffers allocated once before.
/// Every rank gets the same report. Call after AgreeOnInputs succeeded. Errors:
/// kInvalidArgument for iters < 1 (before any communication); after that any
/// error may leave peers waiting, so the job must end with MpiWorld::Abort: the
/// copy service's (a peer that does not answer within the timeout, named with
/// the refit it happened in), the barrier's, MPI's (MpiWorld::AllToAllV's for
/// the baseline).
Result<MpiRefitReport> RunMpiRefit(MpiWorld& world, const ModelSpec& spec,
                                   const BoundCheckpoint& ckpt,
                                   const RefitTopology& topo,
                                   const ReshardPlan& plan, double plan_ms,
                                   const MpiRefitOptions& options);

}  // namespace refit::exec

#endif  // REFIT_JOB_MPI_MPI_REFIT_JOB_H_
