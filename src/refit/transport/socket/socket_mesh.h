// SocketMesh: the processes of one node connected pairwise over Unix-domain
// stream sockets (unix(7)), for a group launched without MPI (torchrun, Ray,
// a trainer spawning its engine's workers). Rank r listens on
// RENDEZVOUS/refit-rank-<r>.sock, connects to every lower rank and accepts
// every higher one, then removes its socket file: one connection per pair.
//
// Messages are frames (16 bytes: channel, length; then the bytes) so several
// users share the connections: the group's collectives on channel 0, each
// copy service on a channel of its own. A frame that arrives for another
// channel, or before its receive is posted, is kept until asked for, so no
// rank's writes wait on a reader busy elsewhere. Every wait is bounded by
// the timeout counted from the last byte moved on any connection.
#ifndef REFIT_TRANSPORT_SOCKET_SOCKET_MESH_H_
#define REFIT_TRANSPORT_SOCKET_SOCKET_MESH_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "refit/core/status.h"
#include "refit/transport/p2p/p2p_backend.h"

namespace refit::exec {

class SocketMesh {
 public:
  /// Connects rank `rank` of `size` through the folder `rendezvous` (which
  /// must exist; one folder per group at a time). Every rank calls it; it
  /// returns once this rank is connected to all others.
  /// Errors: kInvalidArgument for a rank out of [0, size) or a socket path
  /// longer than a Unix socket takes (108 bytes); kDeadlineExceeded naming
  /// the ranks not heard from within `timeout`; kIoError for a refused
  /// system call (named, with errno's text).
  static Result<std::unique_ptr<SocketMesh>> Connect(
      const std::string& rendezvous, int rank, int size,
      std::chrono::milliseconds timeout);
  ~SocketMesh();

  int rank() const { return rank_; }
  int size() const { return static_cast<int>(fds_.size()); }
  std::chrono::milliseconds timeout() const { return timeout_; }

  /// Sends each of `sends` to its peer and fills each of `recvs` from its
  /// peer, all on `channel`, returning when all are done. Between two ranks
  /// the k-th send on a channel matches the k-th receive and must have its
  /// size; a rank may send to itself (within this call or an earlier one).
  /// Errors: kDeadlineExceeded when no byte moves for the timeout;
  /// kFailedPrecondition for a frame whose size is not the receive's;
  /// kIoError for a closed connection or a refused call (the peer named).
  /// After an error the mesh is unusable (kFailedPrecondition).
  Status Exchange(uint64_t channel, std::span<const P2pSend> sends,
                  std::span<const P2pRecv> recvs);

  /// Every rank's `mine`, in rank order, over `channel` (each rank calls it
  /// in the same order). Errors: Exchange's.
  Result<std::vector<std::string>> AllGather(uint64_t channel,
                                             std::string_view mine);

 private:
  struct Peer;
  SocketMesh(int rank, std::vector<int> fds, std::chrono::milliseconds timeout);
  // Frames for (peer, channel) that arrived before their receive.
  using Kept = std::deque<std::vector<std::byte>>;
  Status Fail(Status st);

  int rank_;
  std::vector<int> fds_;  // by peer rank; -1 for this rank
  std::chrono::milliseconds timeout_;
  std::map<std::pair<int, uint64_t>, Kept> kept_;
  // A frame being read from each peer (header, then the bytes into a kept
  // frame or a posted receive).
  std::vector<std::unique_ptr<Peer>> reading_;
  std::vector<bool> closed_;  // peers that closed owing nothing
  Status broken_;
};

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_SOCKET_SOCKET_MESH_H_
