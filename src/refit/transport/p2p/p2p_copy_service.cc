#include "refit/transport/p2p/p2p_copy_service.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "refit/exec/block_chunks.h"
#include "refit/transport/p2p/p2p_schedule.h"

namespace refit::exec {

namespace {

// What one rank tells each peer in stage 1, as 64-bit words.
struct Header {
  uint64_t staging_bytes = 0;
  uint64_t peers = 0;
  uint64_t count = 0;      // messages this rank sends the peer
  uint64_t unchanged = 0;  // 1: the same list as the last Run's
};

template <typename Block>
struct Submitted {
  uint64_t task_id = 0;
  std::vector<Block> blocks;
};

// What a rank keeps about one peer from Run to Run: the lists last sent to
// and received from it (stage 2 is skipped for a list that did not change).
struct Remembered {
  bool valid = false;
  std::vector<WireMessage> sent;
  std::vector<WireMessage> received;
};

// One peer of a Run, and this rank's side of both its streams.
struct Peer {
  int rank = 0;
  std::vector<Submitted<ConstBlock>> sends;  // by task
  std::vector<Submitted<MutBlock>> recvs;    // by task
  Header mine, theirs;
  std::vector<WireMessage> sent;      // my list to the peer
  std::vector<WireMessage> received;  // the peer's list to me
  std::vector<WireChunk> out_chunks, in_chunks;
  std::vector<std::vector<ConstBlock>> out_pieces;  // per out chunk
  std::vector<std::vector<MutBlock>> in_pieces;     // per in chunk; {}: drain
  // Per chunk: where it is sent from or received into on this rank (nullptr:
  // staged, packed or unpacked through the arena).
  std::vector<const std::byte*> out_direct;
  std::vector<std::byte*> in_direct;
};

// "0.3 s".
std::string SecondsText(std::chrono::milliseconds ms) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", ms.count() / 1000.0);
  return text;
}

template <typename Block>
std::vector<WireMessage> ListOf(const std::vector<Submitted<Block>>& subs) {
  std::vector<WireMessage> list;
  for (const auto& s : subs) list.push_back({s.task_id, TotalBytes(s.blocks)});
  return list;
}

bool SameList(const std::vector<WireMessage>& a,
              const std::vector<WireMessage>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const WireMessage& x, const WireMessage& y) {
                      return x.task_id == y.task_id && x.bytes == y.bytes;
                    });
}

// The chunk sizes of each of `messages` messages, from a stream's chunks.
std::vector<std::vector<uint64_t>> SizesByMessage(
    const std::vector<WireChunk>& chunks, size_t messages) {
  std::vector<std::vector<uint64_t>> sizes(messages);
  for (const WireChunk& c : chunks) sizes[c.message].push_back(c.bytes);
  return sizes;
}

// Memory of the backend's, grown on demand and kept.
class BackendBuffer {
 public:
  explicit BackendBuffer(P2pBackend* backend) : backend_(backend) {}
  ~BackendBuffer() { Release(); }
  Result<std::byte*> Get(uint64_t bytes) {
    if (bytes > size_) {
      Release();
      REFIT_ASSIGN_OR_RETURN(data_, backend_->Allocate(bytes));
      size_ = bytes;
    }
    return data_;
  }
  void Release() {
    if (data_ != nullptr) backend_->Free(data_);
    data_ = nullptr;
    size_ = 0;
  }

 private:
  P2pBackend* backend_;
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

// One round's work on this rank.
struct Round {
  std::vector<ConstBlock> pack_from;
  std::vector<MutBlock> pack_to;
  std::vector<P2pSend> sends;
  std::vector<P2pRecv> recvs;
  std::vector<ConstBlock> unpack_from;
  std::vector<MutBlock> unpack_to;
};

class P2pCopyService final : public CopyService {
 public:
  P2pCopyService(std::unique_ptr<P2pBackend> backend, P2pCopyOptions options)
      : backend_(std::move(backend)),
        options_(std::move(options)),
        meta_(backend_.get()),
        arena_(backend_.get()) {}
  ~P2pCopyService() override { (void)Close(); }

  int rank() const override { return backend_->rank(); }

  TransportCapabilities capabilities() const override {
    TransportCapabilities caps;
    caps.reads = caps.writes = backend_->kinds();
    caps.max_staging_bytes = options_.max_staging_bytes;
    return caps;
  }

  Status SubmitSend(int dst_rank, uint64_t task_id,
                    std::vector<ConstBlock> blocks) override {
    return Submit(dst_rank, task_id, std::move(blocks), sends_, "send to");
  }
  Status SubmitRecv(int src_rank, uint64_t task_id,
                    std::vector<MutBlock> blocks) override {
    return Submit(src_rank, task_id, std::move(blocks), recvs_, "receive from");
  }

  Status CopyLocal(std::span<const ConstBlock> from,
                   std::span<const MutBlock> to) override {
    REFIT_RETURN_IF_ERROR(Usable());
    REFIT_RETURN_IF_ERROR(backend_->Copy(from, to));
    return backend_->Wait();
  }

  Status Run() override;

  Status OrderAfter(uintptr_t cuda_stream) override {
    REFIT_RETURN_IF_ERROR(Usable());
    return backend_->OrderAfter(cuda_stream);
  }

  Status Close() override {
    if (backend_ == nullptr) return OkStatus();
    meta_.Release();
    arena_.Release();
    backend_.reset();
    return OkStatus();
  }

 private:
  template <typename Block>
  using Queue = std::map<int, std::vector<Submitted<Block>>>;

  template <typename Block>
  Status Submit(int peer, uint64_t task_id, std::vector<Block> blocks,
                Queue<Block>& queue, const char* what) {
    REFIT_RETURN_IF_ERROR(Usable());
    if (peer < 0 || peer >= backend_->size()) {
      return InvalidArgument(Prefix() + what + " rank " + std::to_string(peer) +
                             " of a world of " +
                             std::to_string(backend_->size()));
    }
    for (const auto& s : queue[peer]) {
      if (s.task_id == task_id) {
        return InvalidArgument(Prefix() + "task " + std::to_string(task_id) +
                               " " + what + " rank " + std::to_string(peer) +
                               " submitted twice");
      }
    }
    queue[peer].push_back({task_id, std::move(blocks)});
    return OkStatus();
  }

  std::string Prefix() const {
    return options_.name + ": rank " + std::to_string(rank()) + " ";
  }
  Status Usable() const {
    if (backend_ == nullptr)
      return FailedPrecondition(options_.name + ": closed");
    if (!broken_.ok()) {
      return FailedPrecondition(Prefix() + "is unusable after a failed Run (" +
                                broken_.message() + ")");
    }
    return OkStatus();
  }

  std::map<int, Peer> TakePeers();
  Status SwapHeaders(std::map<int, Peer>& peers);
  Status SwapLists(std::map<int, Peer>& peers);
  Status MatchAndCut(Peer& p) const;
  void ChooseDirect(Peer& p) const;
  Status MoveData(std::map<int, Peer>& peers);
  Status ExchangeHost(std::span<const P2pSend> sends,
                      std::span<const P2pRecv> recvs);
  Status Fail(const Status& st, const std::map<int, Peer>& peers,
              const char* stage);

  std::unique_ptr<P2pBackend> backend_;
  P2pCopyOptions options_;
  BackendBuffer meta_;
  BackendBuffer arena_;
  Queue<ConstBlock> sends_;
  Queue<MutBlock> recvs_;
  std::map<int, Remembered> remembered_;
  Status broken_;
};

std::map<int, Peer> P2pCopyService::TakePeers() {
  std::map<int, Peer> peers;
  for (auto& [rank, subs] : sends_) peers[rank].sends = std::move(subs);
  for (auto& [rank, subs] : recvs_) peers[rank].recvs = std::move(subs);
  sends_.clear();
  recvs_.clear();
  const auto by_task = [](const auto& a, const auto& b) {
    return a.task_id < b.task_id;
  };
  for (auto& [rank, p] : peers) {
    p.rank = rank;
    std::sort(p.sends.begin(), p.sends.end(), by_task);
    std::sort(p.recvs.begin(), p.recvs.end(), by_task);
    p.sent = ListOf(p.sends);
  }
  return peers;
}

Status P2pCopyService::Run() {
  REFIT_RETURN_IF_ERROR(Usable());
  std::map<int, Peer> peers = TakePeers();
  if (peers.empty()) return OkStatus();
  if (Status st = SwapHeaders(peers); !st.ok()) {
    return Fail(st, peers, "its message list");
  }
  if (Status st = SwapLists(peers); !st.ok()) {
    return Fail(st, peers, "its message list");
  }
  Status mismatch;
  for (auto& [rank, p] : peers) {
    Status st = MatchAndCut(p);
    if (mismatch.ok()) mismatch = st;
    ChooseDirect(p);
  }
  if (Status st = MoveData(peers); !st.ok()) {
    return Fail(st, peers, "its bytes");
  }
  for (auto& [rank, p] : peers) {
    remembered_[rank] = {true, std::move(p.sent), std::move(p.received)};
  }
  return mismatch;
}

Status P2pCopyService::SwapHeaders(std::map<int, Peer>& peers) {
  std::vector<P2pSend> sends;
  std::vector<P2pRecv> recvs;
  for (auto& [rank, p] : peers) {
    const Remembered& last = remembered_[rank];
    p.mine = {options_.max_staging_bytes, peers.size(), p.sends.size(),
              last.valid && SameList(last.sent, p.sent) ? 1u : 0u};
    sends.push_back(
        {rank, reinterpret_cast<const std::byte*>(&p.mine), sizeof(Header)});
    recvs.push_back(
        {rank, reinterpret_cast<std::byte*>(&p.theirs), sizeof(Header)});
  }
  return ExchangeHost(sends, recvs);
}

Status P2pCopyService::SwapLists(std::map<int, Peer>& peers) {
  std::vector<P2pSend> sends;
  std::vector<P2pRecv> recvs;
  for (auto& [rank, p] : peers) {
    if (!p.mine.unchanged && !p.sent.empty()) {
      sends.push_back({rank, reinterpret_cast<const std::byte*>(p.sent.data()),
                       p.sent.size() * sizeof(WireMessage)});
    }
    if (p.theirs.unchanged) {
      p.received = remembered_[rank].received;
      if (p.received.size() != p.theirs.count) {
        return Internal(Prefix() + "rank " + std::to_string(rank) +
                        " reused a message list this rank does not have");
      }
    } else {
      p.received.resize(p.theirs.count);
      if (p.theirs.count > 0) {
        recvs.push_back({rank, reinterpret_cast<std::byte*>(p.received.data()),
                         p.received.size() * sizeof(WireMessage)});
      }
    }
  }
  if (sends.empty() && recvs.empty()) return OkStatus();
  return ExchangeHost(sends, recvs);
}

// Sends and receives host memory through the backend's own memory, and waits.
Status P2pCopyService::ExchangeHost(std::span<const P2pSend> sends,
                                    std::span<const P2pRecv> recvs) {
  uint64_t total = 0;
  for (const P2pSend& s : sends) total += s.bytes;
  for (const P2pRecv& r : recvs) total += r.bytes;
  REFIT_ASSIGN_OR_RETURN(std::byte * meta, meta_.Get(total));
  std::vector<ConstBlock> from;
  std::vector<MutBlock> to;
  std::vector<P2pSend> wire_sends;
  std::vector<P2pRecv> wire_recvs;
  std::byte* at = meta;
  for (const P2pSend& s : sends) {
    from.push_back({s.data, s.bytes, 1, s.bytes});
    to.push_back({at, s.bytes, 1, s.bytes});
    wire_sends.push_back({s.peer, at, s.bytes});
    at += s.bytes;
  }
  std::vector<ConstBlock> back_from;
  std::vector<MutBlock> back_to;
  for (const P2pRecv& r : recvs) {
    wire_recvs.push_back({r.peer, at, r.bytes});
    back_from.push_back({at, r.bytes, 1, r.bytes});
    back_to.push_back({r.data, r.bytes, 1, r.bytes});
    at += r.bytes;
  }
  if (!from.empty()) REFIT_RETURN_IF_ERROR(backend_->Copy(from, to));
  REFIT_RETURN_IF_ERROR(backend_->Exchange(wire_sends, wire_recvs));
  if (!back_from.empty()) {
    REFIT_RETURN_IF_ERROR(backend_->Copy(back_from, back_to));
  }
  return backend_->Wait();
}

// Matches the peer's list with this rank's receives and cuts both streams.
// Errors: kFailedPrecondition for the first message the sides disagree on
// (its bytes are then received into staging and dropped).
Status P2pCopyService::MatchAndCut(Peer& p) const {
  const uint64_t chunk =
      PairChunkBytes({p.mine.staging_bytes, p.mine.peers},
                     {p.theirs.staging_bytes, p.theirs.peers});
  p.out_chunks = StreamChunks(p.sent, chunk);
  p.in_chunks = StreamChunks(p.received, chunk);
  const auto out_sizes = SizesByMessage(p.out_chunks, p.sends.size());
  const auto in_sizes = SizesByMessage(p.in_chunks, p.received.size());
  for (uint32_t m = 0; m < p.sends.size(); ++m) {
    const std::vector<uint64_t>& sizes = out_sizes[m];
    if (sizes.empty()) continue;  // CutBlocks wants bytes
    for (auto& piece : CutBlocks(p.sends[m].blocks, sizes)) {
      p.out_pieces.push_back(std::move(piece));
    }
  }
  Status mismatch;
  const std::string from = " from rank " + std::to_string(p.rank);
  std::vector<bool> matched(p.recvs.size());
  for (uint32_t m = 0; m < p.received.size(); ++m) {
    const WireMessage& w = p.received[m];
    const auto it =
        std::find_if(p.recvs.begin(), p.recvs.end(),
                     [&](const auto& s) { return s.task_id == w.task_id; });
    const std::vector<uint64_t>& sizes = in_sizes[m];
    std::vector<std::vector<MutBlock>> pieces(sizes.size());
    if (it == p.recvs.end()) {
      if (mismatch.ok()) {
        mismatch = FailedPrecondition(Prefix() + "received task " +
                                      std::to_string(w.task_id) + from + " (" +
                                      std::to_string(w.bytes) +
                                      " bytes), which it did not expect");
      }
    } else if (const uint64_t want = TotalBytes(it->blocks); want != w.bytes) {
      matched[it - p.recvs.begin()] = true;
      if (mismatch.ok()) {
        mismatch = FailedPrecondition(
            Prefix() + "expected " + std::to_string(want) + " bytes of task " +
            std::to_string(w.task_id) + from + ", which sent " +
            std::to_string(w.bytes));
      }
    } else {
      matched[it - p.recvs.begin()] = true;
      if (!sizes.empty()) pieces = CutBlocks(it->blocks, sizes);
    }
    for (auto& piece : pieces) p.in_pieces.push_back(std::move(piece));
  }
  for (size_t i = 0; i < p.recvs.size() && mismatch.ok(); ++i) {
    if (!matched[i]) {
      mismatch = FailedPrecondition(Prefix() + "expected task " +
                                    std::to_string(p.recvs[i].task_id) + from +
                                    ", which did not send it");
    }
  }
  return mismatch;
}

// A chunk goes in place when its bytes are one contiguous region of memory
// the backend exchanges; a drained one is always staged.
void P2pCopyService::ChooseDirect(Peer& p) const {
  for (const auto& piece : p.out_pieces) {
    const std::byte* base = ContiguousBase(piece);
    p.out_direct.push_back(
        base != nullptr && backend_->Exchangeable(base) ? base : nullptr);
  }
  for (const auto& piece : p.in_pieces) {
    std::byte* base = ContiguousBase(piece);
    p.in_direct.push_back(
        base != nullptr && backend_->Exchangeable(base) ? base : nullptr);
  }
}

// Bytes round r stages on this rank.
uint64_t StagedBytes(const std::map<int, Peer>& peers, size_t r) {
  uint64_t bytes = 0;
  for (const auto& [rank, p] : peers) {
    if (r < p.out_chunks.size() && p.out_direct[r] == nullptr) {
      bytes += p.out_chunks[r].bytes;
    }
    if (r < p.in_chunks.size() && p.in_direct[r] == nullptr) {
      bytes += p.in_chunks[r].bytes;
    }
  }
  return bytes;
}

// Round r: chunk r of every stream; staged chunks take consecutive room of
// `arena`.
Round BuildRound(const std::map<int, Peer>& peers, size_t r, std::byte* arena) {
  Round round;
  std::byte* at = arena;
  for (const auto& [rank, p] : peers) {
    if (r < p.out_chunks.size()) {
      const uint64_t bytes = p.out_chunks[r].bytes;
      const std::byte* base = p.out_direct[r];
      if (base == nullptr) {
        const std::vector<ConstBlock>& piece = p.out_pieces[r];
        round.pack_from.insert(round.pack_from.end(), piece.begin(),
                               piece.end());
        round.pack_to.push_back({at, bytes, 1, bytes});
        base = at;
        at += bytes;
      }
      round.sends.push_back({rank, base, bytes});
    }
    if (r < p.in_chunks.size()) {
      const uint64_t bytes = p.in_chunks[r].bytes;
      std::byte* base = p.in_direct[r];
      if (base == nullptr) {
        const std::vector<MutBlock>& piece = p.in_pieces[r];
        if (!piece.empty()) {
          round.unpack_from.push_back({at, bytes, 1, bytes});
          round.unpack_to.insert(round.unpack_to.end(), piece.begin(),
                                 piece.end());
        }
        base = at;
        at += bytes;
      }
      round.recvs.push_back({rank, base, bytes});
    }
  }
  return round;
}

Status P2pCopyService::MoveData(std::map<int, Peer>& peers) {
  size_t rounds = 0;
  for (const auto& [rank, p] : peers) {
    rounds = std::max({rounds, p.out_chunks.size(), p.in_chunks.size()});
  }
  if (rounds == 0) return OkStatus();
  uint64_t staged = 0;
  for (size_t r = 0; r < rounds; ++r) {
    staged = std::max(staged, StagedBytes(peers, r));
  }
  if (staged > options_.max_staging_bytes) {
    return Internal("a round stages " + std::to_string(staged) +
                    " bytes, above the bound of " +
                    std::to_string(options_.max_staging_bytes));
  }
  std::byte* arena = nullptr;
  if (staged > 0) {
    REFIT_ASSIGN_OR_RETURN(arena, arena_.Get(staged));
  }
  for (size_t r = 0; r < rounds; ++r) {
    const Round round = BuildRound(peers, r, arena);
    if (!round.pack_from.empty()) {
      REFIT_RETURN_IF_ERROR(backend_->Copy(round.pack_from, round.pack_to));
    }
    REFIT_RETURN_IF_ERROR(backend_->Exchange(round.sends, round.recvs));
    if (!round.unpack_from.empty()) {
      REFIT_RETURN_IF_ERROR(backend_->Copy(round.unpack_from, round.unpack_to));
    }
  }
  return backend_->Wait();
}

// A failed stage: a timeout names what this rank waited for; the endpoint
// is unusable afterwards.
Status P2pCopyService::Fail(const Status& st, const std::map<int, Peer>& peers,
                            const char* stage) {
  broken_ = st;
  if (st.code() != StatusCode::kDeadlineExceeded) {
    return Status(st.code(), Prefix() + st.message());
  }
  constexpr int kMaxNamed = 8;
  std::string what;
  int named = 0;
  for (const auto& [rank, p] : peers) {
    const std::string peer = std::to_string(rank);
    for (const auto& s : p.recvs) {
      if (named++ < kMaxNamed) {
        what += (what.empty() ? "" : ", ") + std::string("task ") +
                std::to_string(s.task_id) + " from rank " + peer;
      }
    }
    for (const auto& s : p.sends) {
      if (named++ < kMaxNamed) {
        what += (what.empty() ? "" : ", ") + std::string("task ") +
                std::to_string(s.task_id) + " to rank " + peer;
      }
    }
  }
  if (named > kMaxNamed) what += ", ...";
  return DeadlineExceeded(Prefix() + "waited " + SecondsText(options_.timeout) +
                          " for " + what + " (" + stage + "; " + st.message() +
                          ")");
}

}  // namespace

std::unique_ptr<CopyService> MakeP2pCopyService(
    std::unique_ptr<P2pBackend> backend, const P2pCopyOptions& options) {
  return std::make_unique<P2pCopyService>(std::move(backend), options);
}

}  // namespace refit::exec
