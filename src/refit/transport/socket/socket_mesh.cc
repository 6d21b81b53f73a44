#include "refit/transport/socket/socket_mesh.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

namespace refit::exec {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kHeaderBytes = 16;  // channel, length (little-endian)
constexpr uint64_t kHelloMagic = 0x3174696665722d6bull;  // "k-refit1"

std::string Errno(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

std::string Seconds(std::chrono::milliseconds ms) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", ms.count() / 1000.0);
  return text;
}

int MillisLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - Clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 100));
}

std::string SocketPath(const std::string& rendezvous, int rank) {
  return rendezvous + "/refit-rank-" + std::to_string(rank) + ".sock";
}

Result<sockaddr_un> Address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof(a.sun_path)) {
    return InvalidArgument("socket mesh: the socket path " + path + " is " +
                           std::to_string(path.size()) +
                           " bytes; a Unix socket takes fewer than " +
                           std::to_string(sizeof(a.sun_path)));
  }
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

// Reads or writes exactly `bytes` on a blocking socket before `deadline`.
Status Transfer(int fd, std::byte* data, uint64_t bytes, bool write,
                Clock::time_point deadline, const std::string& what) {
  uint64_t done = 0;
  while (done < bytes) {
    pollfd p{fd, static_cast<short>(write ? POLLOUT : POLLIN), 0};
    if (poll(&p, 1, MillisLeft(deadline)) < 0 && errno != EINTR) {
      return IoError(Errno(what + ": poll"));
    }
    if (p.revents == 0) {
      if (Clock::now() >= deadline) return DeadlineExceeded(what);
      continue;
    }
    const ssize_t n = write ? send(fd, data + done, bytes - done, MSG_NOSIGNAL)
                            : recv(fd, data + done, bytes - done, 0);
    if (n == 0) return IoError(what + ": the peer closed the connection");
    if (n < 0 && errno != EINTR && errno != EAGAIN) {
      return IoError(Errno(what));
    }
    if (n > 0) done += static_cast<uint64_t>(n);
  }
  return OkStatus();
}

// Connects to `rank`'s socket, retrying until it listens or `deadline`.
Result<int> ConnectTo(const std::string& rendezvous, int me, int rank,
                      Clock::time_point deadline) {
  REFIT_ASSIGN_OR_RETURN(const sockaddr_un a,
                         Address(SocketPath(rendezvous, rank)));
  for (;;) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return IoError(Errno("socket mesh: socket"));
    if (connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) == 0) {
      return fd;
    }
    const int err = errno;
    close(fd);
    if (err != ENOENT && err != ECONNREFUSED && err != EAGAIN) {
      errno = err;
      return IoError(Errno("socket mesh: rank " + std::to_string(me) +
                           " connecting to rank " + std::to_string(rank)));
    }
    if (Clock::now() >= deadline) {
      return DeadlineExceeded("socket mesh: rank " + std::to_string(me) +
                              " found no rank " + std::to_string(rank) +
                              " listening at " + SocketPath(rendezvous, rank));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::array<std::byte, 24> Hello(int rank, int size) {
  std::array<std::byte, 24> h{};
  const uint64_t words[3] = {kHelloMagic, static_cast<uint64_t>(rank),
                             static_cast<uint64_t>(size)};
  std::memcpy(h.data(), words, sizeof(words));
  return h;
}

std::array<std::byte, kHeaderBytes> FrameHeader(uint64_t channel,
                                                uint64_t bytes) {
  std::array<std::byte, kHeaderBytes> h{};
  std::memcpy(h.data(), &channel, 8);
  std::memcpy(h.data() + 8, &bytes, 8);
  return h;
}

// One send on its way: the header, then the bytes.
struct Outgoing {
  std::array<std::byte, kHeaderBytes> header;
  const std::byte* data = nullptr;
  uint64_t bytes = 0;
  uint64_t done = 0;  // of kHeaderBytes + bytes
};

}  // namespace

// The frame being read from one peer.
struct SocketMesh::Peer {
  std::array<std::byte, kHeaderBytes> header{};
  uint64_t header_got = 0;
  uint64_t channel = 0;
  uint64_t bytes = 0;
  uint64_t got = 0;
  std::byte* target = nullptr;  // a posted receive, or kept.data()
  std::vector<std::byte> kept;
  bool posted = false;
};

Result<std::unique_ptr<SocketMesh>> SocketMesh::Connect(
    const std::string& rendezvous, int rank, int size,
    std::chrono::milliseconds timeout) {
  if (size <= 0 || rank < 0 || rank >= size) {
    return InvalidArgument("socket mesh: rank " + std::to_string(rank) +
                           " is not in a group of " + std::to_string(size));
  }
  const std::string mine = SocketPath(rendezvous, rank);
  REFIT_ASSIGN_OR_RETURN(const sockaddr_un a, Address(mine));
  const auto deadline = Clock::now() + timeout;
  const int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) return IoError(Errno("socket mesh: socket"));
  unlink(mine.c_str());  // a stale file of an earlier run
  std::vector<int> fds(size, -1);
  auto fail = [&](Status st) {
    close(listener);
    unlink(mine.c_str());
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
    return st;
  };
  if (bind(listener, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) != 0 ||
      listen(listener, size) != 0) {
    return fail(IoError(Errno("socket mesh: listening at " + mine)));
  }
  const std::string who = "socket mesh: rank " + std::to_string(rank);
  const auto hello = Hello(rank, size);
  for (int p = 0; p < rank; ++p) {
    Result<int> fd = ConnectTo(rendezvous, rank, p, deadline);
    if (!fd.ok()) return fail(fd.status());
    fds[p] = *fd;
    Status sent =
        Transfer(*fd, const_cast<std::byte*>(hello.data()), hello.size(), true,
                 deadline, who + " greeting rank " + std::to_string(p));
    if (!sent.ok()) return fail(sent);
  }
  for (int left = size - 1 - rank; left > 0; --left) {
    pollfd p{listener, POLLIN, 0};
    while (poll(&p, 1, MillisLeft(deadline)) <= 0 || p.revents == 0) {
      if (Clock::now() >= deadline) {
        std::string missing;
        for (int q = rank + 1; q < size; ++q) {
          if (fds[q] < 0) missing += " " + std::to_string(q);
        }
        return fail(DeadlineExceeded(who + " heard nothing within " +
                                     Seconds(timeout) + " from ranks" +
                                     missing));
      }
    }
    const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return fail(IoError(Errno(who + ": accept")));
    std::array<std::byte, 24> h{};
    Status got = Transfer(fd, h.data(), h.size(), false, deadline,
                          who + " reading a greeting");
    uint64_t words[3] = {};
    std::memcpy(words, h.data(), sizeof(words));
    const auto peer = static_cast<int64_t>(words[1]);
    if (got.ok() && (words[0] != kHelloMagic || words[2] != uint64_t(size) ||
                     peer <= rank || peer >= size || fds[peer] >= 0)) {
      got =
          FailedPrecondition(who + ": a greeting from outside this group of " +
                             std::to_string(size) +
                             " (one folder per "
                             "group at a time)");
    }
    if (!got.ok()) {
      close(fd);
      return fail(got);
    }
    fds[peer] = fd;
  }
  close(listener);
  unlink(mine.c_str());
  for (int fd : fds) {
    if (fd >= 0) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return std::unique_ptr<SocketMesh>(
      new SocketMesh(rank, std::move(fds), timeout));
}

SocketMesh::SocketMesh(int rank, std::vector<int> fds,
                       std::chrono::milliseconds timeout)
    : rank_(rank), fds_(std::move(fds)), timeout_(timeout) {
  reading_.resize(fds_.size());
  closed_.assign(fds_.size(), false);
  for (auto& r : reading_) r = std::make_unique<Peer>();
}

SocketMesh::~SocketMesh() {
  for (int fd : fds_) {
    if (fd >= 0) close(fd);
  }
}

Status SocketMesh::Fail(Status st) {
  broken_ = st;
  return st;
}

Status SocketMesh::Exchange(uint64_t channel, std::span<const P2pSend> sends,
                            std::span<const P2pRecv> recvs) {
  if (!broken_.ok()) {
    return FailedPrecondition("socket mesh: unusable after: " +
                              broken_.message());
  }
  const int n = size();
  const std::string me = "socket mesh: rank " + std::to_string(rank_);
  std::vector<std::deque<Outgoing>> out(n);
  std::vector<std::deque<const P2pRecv*>> in(n);
  uint64_t left = 0;  // sends and receives not done
  for (const P2pSend& s : sends) {
    if (s.peer == rank_) {
      kept_[{rank_, channel}].emplace_back(s.data, s.data + s.bytes);
    } else {
      out[s.peer].push_back({FrameHeader(channel, s.bytes), s.data, s.bytes});
      ++left;
    }
  }
  for (const P2pRecv& r : recvs) {
    in[r.peer].push_back(&r);
    ++left;
  }
  // Receives from `p` whose frames came earlier: kept ones go first.
  auto match_kept = [&](int p) -> Status {
    auto it = kept_.find({p, channel});
    while (!in[p].empty() && it != kept_.end() && !it->second.empty()) {
      const P2pRecv& r = *in[p].front();
      const std::vector<std::byte>& f = it->second.front();
      if (f.size() != r.bytes) {
        return FailedPrecondition(me + ": rank " + std::to_string(p) +
                                  " sent " + std::to_string(f.size()) +
                                  " bytes where " + std::to_string(r.bytes) +
                                  " were expected");
      }
      std::copy(f.begin(), f.end(), r.data);
      it->second.pop_front();
      in[p].pop_front();
      --left;
    }
    return OkStatus();
  };
  for (int p = 0; p < n; ++p) {  // sends to itself among them
    if (Status st = match_kept(p); !st.ok()) return Fail(st);
    if (p == rank_ && !in[p].empty()) {
      return Fail(FailedPrecondition(
          me + ": a receive from itself with no send to itself before it"));
    }
  }
  auto deadline = Clock::now() + timeout_;
  std::vector<pollfd> polls;
  std::vector<int> peers;
  while (left > 0) {
    polls.clear();
    peers.clear();
    for (int p = 0; p < n; ++p) {
      if (fds_[p] < 0) continue;
      if (closed_[p]) {
        if (in[p].empty() && out[p].empty()) continue;
        return Fail(IoError(me + ": rank " + std::to_string(p) +
                            " closed its connection"));
      }
      polls.push_back(
          {fds_[p], static_cast<short>(POLLIN | (out[p].empty() ? 0 : POLLOUT)),
           0});
      peers.push_back(p);
    }
    if (poll(polls.data(), polls.size(), MillisLeft(deadline)) < 0 &&
        errno != EINTR) {
      return Fail(IoError(Errno(me + ": poll")));
    }
    bool moved = false;
    for (size_t i = 0; i < polls.size(); ++i) {
      const int p = peers[i];
      const std::string peer = "rank " + std::to_string(p);
      if (polls[i].revents & POLLOUT) {
        while (!out[p].empty()) {
          Outgoing& o = out[p].front();
          const bool head = o.done < kHeaderBytes;
          const std::byte* from = head ? o.header.data() + o.done
                                       : o.data + (o.done - kHeaderBytes);
          const uint64_t want =
              head ? kHeaderBytes - o.done : o.bytes - (o.done - kHeaderBytes);
          const ssize_t w =
              want == 0 ? 0 : send(fds_[p], from, want, MSG_NOSIGNAL);
          if (w < 0 && (errno == EAGAIN || errno == EINTR)) break;
          if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            return Fail(IoError(me + ": " + peer + " closed its connection"));
          }
          if (w < 0) return Fail(IoError(Errno(me + " sending to " + peer)));
          o.done += static_cast<uint64_t>(w);
          moved |= w > 0;
          if (o.done == kHeaderBytes + o.bytes) {
            out[p].pop_front();
            --left;
          } else if (static_cast<uint64_t>(w) < want) {
            break;
          }
        }
      }
      if ((polls[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      for (;;) {  // read all that is there
        Peer& r = *reading_[p];
        const bool head = r.header_got < kHeaderBytes;
        std::byte* into =
            head ? r.header.data() + r.header_got : r.target + r.got;
        const uint64_t want =
            head ? kHeaderBytes - r.header_got : r.bytes - r.got;
        ssize_t got = 0;
        if (want > 0) {
          got = recv(fds_[p], into, want, 0);
          if (got < 0 && (errno == EAGAIN || errno == EINTR)) break;
          if (got < 0)
            return Fail(IoError(Errno(me + " reading from " + peer)));
          if (got == 0) {
            if (!in[p].empty() || !out[p].empty() || r.header_got > 0) {
              return Fail(IoError(me + ": " + peer + " closed its connection"));
            }
            closed_[p] = true;  // done with this group; nothing owed
            break;
          }
          moved = true;
        }
        if (head) {
          r.header_got += static_cast<uint64_t>(got);
          if (r.header_got < kHeaderBytes) continue;
          std::memcpy(&r.channel, r.header.data(), 8);
          std::memcpy(&r.bytes, r.header.data() + 8, 8);
          r.got = 0;
          r.posted = r.channel == channel && !in[p].empty();
          if (r.posted && in[p].front()->bytes != r.bytes) {
            return Fail(FailedPrecondition(
                me + ": " + peer + " sent " + std::to_string(r.bytes) +
                " bytes where " + std::to_string(in[p].front()->bytes) +
                " were expected"));
          }
          if (r.posted) {
            r.target = in[p].front()->data;
          } else {
            r.kept.assign(r.bytes, std::byte{0});
            r.target = r.kept.data();
          }
        } else {
          r.got += static_cast<uint64_t>(got);
        }
        if (r.header_got == kHeaderBytes && r.got == r.bytes) {  // complete
          if (r.posted) {
            in[p].pop_front();
            --left;
          } else {
            // Begun before its receive was posted (in an earlier call).
            kept_[{p, r.channel}].push_back(std::move(r.kept));
            if (Status st = match_kept(p); !st.ok()) return Fail(st);
          }
          r.header_got = 0;
          r.kept = {};
        }
      }
    }
    if (moved) {
      deadline = Clock::now() + timeout_;
    } else if (Clock::now() >= deadline) {
      std::string waiting;
      for (int p = 0; p < n; ++p) {
        if (!out[p].empty() || !in[p].empty()) {
          waiting += " " + std::to_string(p);
        }
      }
      return Fail(
          DeadlineExceeded(me + ": no byte moved for " + Seconds(timeout_) +
                           ", " + std::to_string(left) +
                           " sends and receives left with ranks" + waiting));
    }
  }
  return OkStatus();
}

Result<std::vector<std::string>> SocketMesh::AllGather(uint64_t channel,
                                                       std::string_view mine) {
  const int n = size();
  const uint64_t my_bytes = mine.size();
  std::vector<uint64_t> sizes(n, 0);
  std::vector<P2pSend> sends;
  std::vector<P2pRecv> recvs;
  for (int p = 0; p < n; ++p) {
    if (p == rank_) continue;
    sends.push_back({p, reinterpret_cast<const std::byte*>(&my_bytes), 8});
    recvs.push_back({p, reinterpret_cast<std::byte*>(&sizes[p]), 8});
  }
  REFIT_RETURN_IF_ERROR(Exchange(channel, sends, recvs));
  std::vector<std::string> all(n);
  all[rank_] = std::string(mine);
  sends.clear();
  recvs.clear();
  for (int p = 0; p < n; ++p) {
    if (p == rank_) continue;
    all[p].resize(sizes[p]);
    if (my_bytes > 0) {
      sends.push_back(
          {p, reinterpret_cast<const std::byte*>(mine.data()), my_bytes});
    }
    if (sizes[p] > 0) {
      recvs.push_back(
          {p, reinterpret_cast<std::byte*>(all[p].data()), sizes[p]});
    }
  }
  REFIT_RETURN_IF_ERROR(Exchange(channel, sends, recvs));
  return all;
}

}  // namespace refit::exec
