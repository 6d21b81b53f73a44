// The CUDA IPC copy service: for collocated processes on one node (a trainer
// and an inference engine on the same GPUs), the sender writes straight into
// the receiver's device memory through CUDA IPC. No staging, one copy per
// message. A host-memory copy service of the same ranks (the MPI or the
// embedded one) carries only small metadata messages.
//
// One Run, in three control exchanges (control task ids kIpcHeaderTask,
// kIpcManifestTask, kIpcDoneTask, distinct so the phases of ranks that are
// a phase apart never meet):
//  1. every receiver sends each source peer a header (ipc_manifest.h): how
//     many messages it expects, and whether its receive blocks are those of
//     the last successful Run;
//  2. unless unchanged, the manifest: the handles of the allocations holding
//     its receive blocks (one export per allocation), and per message its
//     task id, total bytes and blocks as places in those allocations;
//  3. each sender checks every manifest message against its own (same
//     task, same total), maps the handles it has not mapped yet (cached by
//     handle bytes until a manifest no longer names them), copies its good
//     messages into the mapped blocks (IpcMemory::Move, returns when landed)
//     and returns a done record with a code per message.
// A refit whose receive blocks did not change exchanges only the headers
// and the done records: no export, no mapping, no manifest.
#ifndef REFIT_TRANSPORT_CUDA_IPC_CUDA_IPC_COPY_SERVICE_H_
#define REFIT_TRANSPORT_CUDA_IPC_CUDA_IPC_COPY_SERVICE_H_

#include <cstdint>
#include <memory>

#include "refit/core/status.h"
#include "refit/exec/copy_service.h"
#include "refit/transport/cuda_ipc/ipc_memory.h"

namespace refit::exec {

/// The control service's task ids, one per phase of a Run. The control
/// service belongs to the IPC service, so they never meet a caller's ids.
inline constexpr uint64_t kIpcHeaderTask = 1;
inline constexpr uint64_t kIpcManifestTask = 2;
inline constexpr uint64_t kIpcDoneTask = 3;

struct CudaIpcOptions {
  /// Skip the manifest (and the exports behind it) when a receiver submits
  /// exactly the blocks (same tasks, pointers, runs, allocations) of its
  /// last successful Run. A tensor freed and reallocated at the same address
  /// is a new allocation (IpcMemory::AllocationId) and is exported again.
  /// False: every Run exports and sends its manifest again (the sender
  /// still keeps the mappings of handles it sees again).
  bool reuse_unchanged_manifests = true;
};

/// An endpoint of the CUDA IPC copy service over `control` (a host-memory
/// copy service of the same ranks, owned from now on; its timeout bounds
/// every wait of a Run) and `memory` (this rank's device memory). A
/// receiver waits for its senders' done records while they copy, so the
/// control's timeout must exceed the longest copy of one Run.
///
/// SubmitSend and SubmitRecv take blocks of memory `memory` handles (its
/// kinds()); receive blocks must lie in exportable allocations. Sends to
/// and receives from this rank itself are local Moves. capabilities():
/// reads and writes memory->kinds(), receives in place, no message bound,
/// no staging. Run errors:
///  - the control service's (kDeadlineExceeded for a silent peer), prefixed
///    with this rank, the phase and the tasks and peers it waited for;
///  - on the receiver, kFailedPrecondition "task T from rank S to rank R"
///    when the sender submitted another total (both sizes named; the
///    receive bytes are untouched) or no such task;
///  - on the sender, kFailedPrecondition for a task the receiver did not
///    submit while expecting others from it (a receiver that expects nothing
///    from the sender leaves it waiting: kDeadlineExceeded);
///  - on the receiver, kInvalidArgument from IpcMemory::Export (its senders
///    skip it and succeed);
///  - kInternal from the copy or a mapping (on the sender; its receivers
///    report the task as not copied).
/// Submitting the same (peer, task) twice in one Run is kInvalidArgument; a
/// Submit or Run after Close is kFailedPrecondition.
/// Errors: kInvalidArgument for a null `control` or `memory`.
Result<std::unique_ptr<CopyService>> ConnectCudaIpcCopyService(
    std::unique_ptr<CopyService> control, std::unique_ptr<IpcMemory> memory,
    CudaIpcOptions options = {});

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_CUDA_IPC_CUDA_IPC_COPY_SERVICE_H_
