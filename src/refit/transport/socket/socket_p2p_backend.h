// The P2pBackend over one channel of a SocketMesh: host memory, every call
// done before it returns (the p2p copy service over it is the "socket" copy
// service: processes of one node, no MPI, no GPU).
#ifndef REFIT_TRANSPORT_SOCKET_SOCKET_P2P_BACKEND_H_
#define REFIT_TRANSPORT_SOCKET_SOCKET_P2P_BACKEND_H_

#include <cstdint>
#include <memory>

#include "refit/transport/p2p/p2p_backend.h"
#include "refit/transport/socket/socket_mesh.h"

namespace refit::exec {

/// The backend of `mesh`'s rank on `channel` (one channel per backend; the
/// mesh's collectives use channel 0). Exchanges any host memory in place.
std::unique_ptr<P2pBackend> SocketP2pBackend(std::shared_ptr<SocketMesh> mesh,
                                             uint64_t channel);

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_SOCKET_SOCKET_P2P_BACKEND_H_
