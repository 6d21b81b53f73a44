// How the p2p copy service (p2p_copy_service.h) cuts the messages between two
// ranks into chunks and groups the chunks into rounds, so that both sides of
// every chunk agree on its size and round without asking each other, and no
// rank stages more than its bound in any round.
//
// The messages from rank A to rank B, in task order, form A->B's stream; it
// is cut into chunks of PairChunkBytes(A, B) bytes (a message's last chunk
// shorter; a message never shares a chunk). Round r posts chunk r of every
// stream, in one group. Both ranks know A->B's message sizes (A sends its list
// to B) and both budgets (each sends its Budget to the other), so they cut
// alike; since chunk r of each stream is in round r on both sides, a round
// waits only for chunks its peers post in the same round: no deadlock.
#ifndef REFIT_TRANSPORT_P2P_P2P_SCHEDULE_H_
#define REFIT_TRANSPORT_P2P_P2P_SCHEDULE_H_

#include <cstdint>
#include <span>
#include <vector>

namespace refit::exec {

/// One rank's staging budget for a Run: its bound in bytes and the number
/// of ranks it exchanges messages with (itself included when it sends to
/// itself).
struct P2pBudget {
  uint64_t staging_bytes = 0;
  uint64_t peers = 0;
};

/// The chunk size of the streams between ranks a and b (both directions):
/// min(a.staging_bytes, b.staging_bytes) / (2 * max(a.peers, b.peers)), at
/// least 1. A rank then stages at most one chunk per stream and direction in
/// a round: sum over its peers of 2 * chunk <= its staging_bytes.
uint64_t PairChunkBytes(const P2pBudget& a, const P2pBudget& b);

/// One message of a stream: its task and size in bytes (the sender's).
struct WireMessage {
  uint64_t task_id = 0;
  uint64_t bytes = 0;
};

/// Chunk i of a stream: `bytes` bytes of message `message` (an index into
/// the stream's messages), following the message's earlier chunks.
struct WireChunk {
  uint32_t message = 0;
  uint64_t bytes = 0;
};

/// The chunks of a stream whose messages are `messages` (in stream order),
/// cut at `chunk_bytes` (> 0): ceil(bytes / chunk_bytes) per message, none
/// for a message without bytes.
std::vector<WireChunk> StreamChunks(std::span<const WireMessage> messages,
                                    uint64_t chunk_bytes);

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_P2P_P2P_SCHEDULE_H_
