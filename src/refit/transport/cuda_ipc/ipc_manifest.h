// The control messages of the CUDA IPC copy service, as arrays of 64-bit
// words in host byte order (the peers are processes of one node):
//  - a fixed-size header a receiver sends each source peer every Run;
//  - the manifest (the receiver's export table and, per message from that
//    peer, its task id, total bytes and receive blocks as places in the
//    exported allocations), sent only when it changed;
//  - the done record a sender returns: a code per manifest message.
#ifndef REFIT_TRANSPORT_CUDA_IPC_IPC_MANIFEST_H_
#define REFIT_TRANSPORT_CUDA_IPC_IPC_MANIFEST_H_

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "refit/core/status.h"
#include "refit/transport/cuda_ipc/ipc_memory.h"

namespace refit::exec::ipc {

/// Header flags.
inline constexpr uint64_t kUnchanged = 1;  ///< the manifest of the last Run
inline constexpr uint64_t kRefused = 2;    ///< the receiver could not export

/// What a receiver tells a source peer at the start of every Run.
struct Header {
  uint64_t flags = 0;
  /// Messages the receiver expects from the peer (> 0 unless refused).
  uint64_t messages = 0;
  /// Words of the manifest that follows; 0 when unchanged or refused.
  uint64_t manifest_words = 0;
  /// Grows with every manifest sent to the peer; an unchanged header names
  /// the generation the sender must hold.
  uint64_t generation = 0;
};
inline constexpr size_t kHeaderWords = 5;
std::array<uint64_t, kHeaderWords> EncodeHeader(const Header& header);
/// Errors: kDataLoss when the words are not a header.
Result<Header> DecodeHeader(std::span<const uint64_t, kHeaderWords> words);

/// A receive block: `nruns` runs of `run_bytes` bytes, `stride` bytes apart,
/// the first `offset` bytes into export `export_index`.
struct ManifestBlock {
  uint64_t export_index = 0;
  uint64_t offset = 0;
  uint64_t run_bytes = 0;
  uint64_t nruns = 0;
  uint64_t stride = 0;
};
struct ManifestMessage {
  uint64_t task_id = 0;
  uint64_t total_bytes = 0;
  std::vector<ManifestBlock> blocks;
};
struct ManifestExport {
  IpcHandle handle;
  uint64_t allocation_bytes = 0;
};
struct Manifest {
  std::vector<ManifestExport> exports;
  std::vector<ManifestMessage> messages;
};

std::vector<uint64_t> EncodeManifest(const Manifest& manifest);
/// Errors: kDataLoss when the words are not a manifest: truncated or
/// trailing words, an export index out of the table, a block that ends
/// beyond its allocation, or block bytes that do not add up to the
/// message's total.
Result<Manifest> DecodeManifest(std::span<const uint64_t> words);

/// Bytes from a block's first byte to one past its last run; 0 for a block
/// without bytes. Errors: kInvalidArgument when it overflows 64 bits.
Result<uint64_t> Footprint(uint64_t run_bytes, uint64_t nruns, uint64_t stride);

/// The outcome of one manifest message, as its sender reports it.
enum class DoneCode : uint64_t {
  kOk = 0,
  kSizeMismatch = 1,  ///< the sender submitted a different total
  kNotSubmitted = 2,  ///< the sender submitted no such task
  kCopyFailed = 3,    ///< the sender's copy (or mapping) failed
  kBadManifest = 4,   ///< corrupt manifest, or an unchanged header whose
                      ///< generation the sender does not hold
};
/// Per message: the code and the sender's total bytes.
inline constexpr size_t kDoneWordsPerMessage = 2;

}  // namespace refit::exec::ipc

#endif  // REFIT_TRANSPORT_CUDA_IPC_IPC_MANIFEST_H_
