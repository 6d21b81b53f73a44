// The MPI copy service: one process per rank, messages over MPI point-to-point
// (MPI_Isend / MPI_Irecv) on private duplicates of an MpiWorld's communicator.
//
// At the start of each Run the two sides of every message swap the lengths of
// the contiguous regions their blocks describe (runs adjacent in memory
// merged), on a second communicator: only a flag when the blocks (base
// pointers included) are those of the last Run; the last Run's cut is reused
// when neither side's blocks changed, so blocks may move between Runs (e.g.
// a transform's scratch). Both sides cut the message where either side's
// regions end, so each piece is contiguous on both sides: pieces of at least
// 16 KiB become chunks of their own, sent from and received into the tensors
// in place (one copy, e.g. CMA inside a node); smaller ones are grouped. No
// chunk exceeds ScheduleOptions::chunk_bytes() = max_staging_bytes / (2 *
// max_inflight) bytes. A grouped chunk whose bytes are one contiguous region
// is sent in place; any other is packed into (or unpacked from) a staging
// buffer of its own. Sides that disagree on a message's size cut it in plain
// chunk_bytes chunks (all grouped), so that the receiver reports it.
//
// The two kinds of chunks, in place (large pieces) and grouped, each have
// their own posting order, window and communicator. Per direction, at most
// max_inflight grouped chunks that need staging on this side are in flight
// (each in one of max_inflight staging buffers), so staging never exceeds
// max_staging_bytes per rank; grouped chunks contiguous on this side need no
// staging, and up to max_inflight_direct of them may be in flight besides; at
// most max_inflight_direct in-place chunks are in flight. Both sides of a
// chunk agree on its kind (it follows from the two region lists alone); the
// two sides' windows may differ. All ranks post the chunks of one kind in one
// global order (chunk index, then shifted-permutation round (dst - src) mod
// world, then ranks and task), each side in that order only, so the bounded
// windows cannot deadlock: the first unfinished chunk of each kind's order
// has nothing before it in flight on either side, so it is posted on both
// (a free slot and staging buffer are there), and the kinds do not wait for
// each other. The chunks of one message and kind share a tag (task_id modulo
// MPI_TAG_UB + 1) and communicator, and match in order, as MPI keeps the
// order of messages between one pair with equal tags.
#ifndef REFIT_TRANSPORT_MPI_MPI_COPY_SERVICE_H_
#define REFIT_TRANSPORT_MPI_MPI_COPY_SERVICE_H_

#include <chrono>
#include <cstdint>
#include <memory>

#include "refit/core/staging.h"
#include "refit/exec/copy_service.h"
#include "refit/transport/mpi/mpi_world.h"

namespace refit::exec {

struct MpiCopyOptions {
  /// Run fails when no chunk completes for this long.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  /// The staging bound per rank (max_staging_bytes), the staged grouped
  /// chunks in flight per direction (max_inflight) and so the chunk size
  /// (chunk_bytes()).
  ScheduleOptions schedule;
  /// Chunks of large pieces (in place on both sides, no staging) in flight
  /// per direction, besides the grouped ones; also the grouped chunks
  /// contiguous on this side (no staging) in flight besides the staged ones.
  int max_inflight_direct = 64;
};

/// Opens this process's endpoint on `world`'s communicator: its rank and the
/// ranks it sends to are ranks in that communicator. Collective over it:
/// every process of `world` calls it. The endpoint must be destroyed before
/// MPI is finalized; it does not need `world` after this call. Run fails with
/// kDeadlineExceeded "rank R waited T s for task N from rank P (chunk c of
/// n)" when no chunk completes within the timeout ("(its block list)" when
/// the peer did not even send its region lengths), and with
/// kFailedPrecondition when the sizes of a message differ on its two sides;
/// after a failed Run the endpoint is unusable (Run fails at once with
/// kFailedPrecondition; open a fresh endpoint, collectively, to go on). A
/// failed Run withdraws its receives in flight before it returns, so no late
/// message lands in the caller's blocks; MPI may still read the send blocks
/// of chunks in flight (a peer still in its Run may take them) and the send
/// staging buffers, which it keeps until the process ends. Errors:
/// kInvalidArgument for a schedule out of range (max_inflight < 1,
/// max_staging_bytes < 2 * max_inflight); kDeadlineExceeded when the other
/// processes do not join within the timeout; kIoError for MPI errors.
/// capabilities(): host memory; not in place (small pieces are staged); any
/// message size; staging at most 2 * max_inflight chunks, within
/// max_staging_bytes.
Result<std::unique_ptr<CopyService>> ConnectMpiCopyService(
    const MpiWorld& world, const MpiCopyOptions& options);

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_MPI_MPI_COPY_SERVICE_H_
