#include "refit/transport/p2p/p2p_schedule.h"

#include <algorithm>

namespace refit::exec {

uint64_t PairChunkBytes(const P2pBudget& a, const P2pBudget& b) {
  const uint64_t staging = std::min(a.staging_bytes, b.staging_bytes);
  const uint64_t peers = std::max<uint64_t>({a.peers, b.peers, 1});
  return std::max<uint64_t>(staging / (2 * peers), 1);
}

std::vector<WireChunk> StreamChunks(std::span<const WireMessage> messages,
                                    uint64_t chunk_bytes) {
  std::vector<WireChunk> chunks;
  for (size_t m = 0; m < messages.size(); ++m) {
    for (uint64_t at = 0; at < messages[m].bytes; at += chunk_bytes) {
      chunks.push_back({static_cast<uint32_t>(m),
                        std::min(chunk_bytes, messages[m].bytes - at)});
    }
  }
  return chunks;
}

}  // namespace refit::exec
