#include "refit/transport/mpi/mpi_copy_service.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "refit/exec/block_chunks.h"
#include "refit/transport/mpi/mpi_internal.h"

namespace refit::exec {

namespace {

using internal::MpiError;
using internal::Seconds;

// MPI counts are ints: no chunk is larger than this.
constexpr uint64_t kMaxChunkBytes = 1ull << 30;

// Pieces contiguous on both sides of at least this many bytes are sent in
// place (their own chunk); smaller ones are packed together.
constexpr uint64_t kDirectMinBytes = 16 * 1024;

// One submitted message, cut into chunks.
template <typename Block>
struct Message {
  int peer = 0;
  uint64_t task_id = 0;
  std::vector<Block> blocks;
  // Its cut, kept by the service (Known) from Run to Run.
  const std::vector<std::vector<Block>>* chunks = nullptr;
  const std::vector<uint8_t>* direct = nullptr;  // per chunk: 1 in place
};

// What one side of a message (direction, peer, task) learnt in the last Run:
// its blocks, their segment lengths, the peer's and the chunks. A Run that
// submits the same blocks again, with a peer that did too, reuses them.
template <typename Block>
struct Known {
  std::vector<Block> blocks;
  std::vector<uint64_t> mine;
  std::vector<uint64_t> peer;
  std::vector<std::vector<Block>> chunks;
  std::vector<uint8_t> direct;
};

template <typename Block>
bool SameBlocks(const std::vector<Block>& a, const std::vector<Block>& b) {
  return a.size() == b.size() &&
         (a.empty() ||
          std::memcmp(a.data(), b.data(), a.size() * sizeof(Block)) == 0);
}

// The two kinds of chunks, each with its own posting order, window and
// communicator: grouped small pieces (maybe staged) and large pieces in place
// on both sides (never staged).
constexpr int kPacked = 0;
constexpr int kDirect = 1;

// One chunk and its place in the global posting order of its kind.
struct ChunkRef {
  std::array<uint64_t, 5> key{};  // chunk index, round, src, dst, task_id
  uint32_t message = 0;
  uint32_t chunk = 0;
};

// A staging buffer: grows to at most one chunk and is kept for the next
// chunks.
struct Staging {
  std::unique_ptr<std::byte[]> data;
  uint64_t capacity = 0;

  std::byte* Get(uint64_t n) {
    if (capacity < n) {
      data = std::make_unique_for_overwrite<std::byte[]>(n);
      capacity = n;
    }
    return data.get();
  }
};

// A chunk in flight. A chunk that is not contiguous on this side goes through
// one of its direction's max_inflight staging buffers (`buffer`).
struct Slot {
  bool receive = false;
  int kind = kPacked;
  bool busy = false;
  int buffer = -1;      // staging buffer, or -1 when in place
  size_t position = 0;  // in its direction's posting order of its kind
  uint64_t bytes = 0;
};

class MpiCopyService final : public CopyService {
 public:
  MpiCopyService(std::array<MPI_Comm, 2> comms, MPI_Comm shape_comm, int rank,
                 int world, uint64_t tag_modulus, uint64_t chunk_bytes,
                 const MpiCopyOptions& options)
      : comms_(comms),
        shape_comm_(shape_comm),
        rank_(rank),
        world_(world),
        tag_modulus_(tag_modulus),
        chunk_bytes_(chunk_bytes),
        timeout_(options.timeout) {
    // Grouped chunks in place on this side need no staging: besides the
    // max_inflight staged ones, as many of them as of in-place chunks may be
    // in flight.
    const std::array<int, 2> slots = {
        options.schedule.max_inflight + options.max_inflight_direct,
        options.max_inflight_direct};
    for (int kind : {kPacked, kDirect}) {
      for (bool receive : {false, true}) {
        for (int i = 0; i < slots[kind]; ++i) {
          free_slots_[kind][receive].push_back(static_cast<int>(slots_.size()));
          Slot& slot = slots_.emplace_back();
          slot.receive = receive;
          slot.kind = kind;
        }
      }
    }
    for (bool receive : {false, true}) {
      staging_[receive].resize(options.schedule.max_inflight);
      for (int b = options.schedule.max_inflight - 1; b >= 0; --b) {
        free_buffers_[receive].push_back(b);
      }
    }
    requests_.assign(slots_.size(), MPI_REQUEST_NULL);
  }

  ~MpiCopyService() override {
    if (broken_) {
      // MPI may still write into the buffers of chunks that never completed:
      // leave them, and the communicator, to the end of the process.
      for (const Slot& s : slots_) {
        if (s.busy && s.buffer >= 0) {
          (void)staging_[s.receive][s.buffer].data.release();
        }
      }
      // So may it read the block lists of a failed Run's unfinished sends.
      (void)new std::vector<std::vector<uint64_t>>(std::move(shape_payloads_));
      return;
    }
    (void)Close();
  }

  int rank() const override { return rank_; }

  // Host memory (MPI point-to-point); small pieces go through staging, at
  // most max_inflight buffers of one chunk per direction; messages of any
  // size (cut into chunks).
  TransportCapabilities capabilities() const override {
    TransportCapabilities caps;
    caps.receives_in_place = false;
    caps.max_message_bytes = UINT64_MAX;
    caps.max_staging_bytes = 2 * staging_[0].size() * chunk_bytes_;
    return caps;
  }

  Status SubmitSend(int dst_rank, uint64_t task_id,
                    std::vector<ConstBlock> blocks) override {
    REFIT_RETURN_IF_ERROR(CheckUsable());
    REFIT_RETURN_IF_ERROR(CheckPeer(dst_rank));
    sends_.push_back({dst_rank, task_id, std::move(blocks), {}});
    return OkStatus();
  }

  Status SubmitRecv(int src_rank, uint64_t task_id,
                    std::vector<MutBlock> blocks) override {
    REFIT_RETURN_IF_ERROR(CheckUsable());
    REFIT_RETURN_IF_ERROR(CheckPeer(src_rank));
    recvs_.push_back({src_rank, task_id, std::move(blocks), {}});
    return OkStatus();
  }

  Status Run() override {
    REFIT_RETURN_IF_ERROR(CheckUsable());
    Status st = ChunkMessages();
    if (!st.ok()) {
      broken_ = true;
      return st;
    }
    for (int kind : {kPacked, kDirect}) {
      send_order_[kind] = Order(sends_, /*sending=*/true, kind);
      recv_order_[kind] = Order(recvs_, /*sending=*/false, kind);
    }
    st = Exchange();
    if (!st.ok()) {
      broken_ = true;
      WithdrawReceives();
      return st;
    }
    sends_.clear();
    recvs_.clear();
    return OkStatus();
  }

  Status Close() override {
    if (!closed_ && !broken_) {
      for (MPI_Comm& comm : comms_) MPI_Comm_free(&comm);
      MPI_Comm_free(&shape_comm_);
    }
    closed_ = true;
    return OkStatus();
  }

 private:
  std::string Name() const { return "rank " + std::to_string(rank_); }

  Status CheckUsable() const {
    if (closed_) return FailedPrecondition("mpi copy service closed");
    if (broken_) {
      return FailedPrecondition("mpi copy service: an earlier Run failed");
    }
    return OkStatus();
  }

  Status CheckPeer(int peer) const {
    if (peer >= 0 && peer < world_) return OkStatus();
    return InvalidArgument("mpi copy service: rank " + std::to_string(peer) +
                           " is not in a world of " + std::to_string(world_));
  }

  int Tag(uint64_t task_id) const {
    return static_cast<int>(task_id % tag_modulus_);
  }

  template <typename Block>
  std::vector<ChunkRef> Order(const std::vector<Message<Block>>& messages,
                              bool sending, int kind) const {
    std::vector<ChunkRef> order;
    for (uint32_t i = 0; i < messages.size(); ++i) {
      const Message<Block>& m = messages[i];
      const int src = sending ? rank_ : m.peer;
      const int dst = sending ? m.peer : rank_;
      const auto round = static_cast<uint64_t>((dst - src + world_) % world_);
      for (uint32_t c = 0; c < m.chunks->size(); ++c) {
        if ((*m.direct)[c] != kind) continue;
        order.push_back({{c, round, static_cast<uint64_t>(src),
                          static_cast<uint64_t>(dst), m.task_id},
                         i,
                         c});
      }
    }
    std::sort(
        order.begin(), order.end(),
        [](const ChunkRef& a, const ChunkRef& b) { return a.key < b.key; });
    return order;
  }

  // The tag of a message's segment lengths: the side that sends them
  // (sender or receiver of the data) in the low bit.
  int ShapeTag(uint64_t task_id, bool from_sender) const {
    return static_cast<int>((task_id % (tag_modulus_ / 2)) * 2 +
                            (from_sender ? 0 : 1));
  }

  // Cuts every message into chunks. The two sides of a message first swap
  // their segment lengths (flag 1, then the lengths; or flag 0 alone when
  // their blocks, base pointers included, are the ones of the last Run, whose
  // lengths the peer still knows), so that both cut it where
  // either side's segments end: large pieces then go in place on both sides,
  // only small ones through staging. Messages whose sides disagree on the
  // size are cut in plain chunk_bytes chunks, so that the receiver reports
  // the mismatch. Chunks are reused when neither side's blocks changed.
  Status ChunkMessages() {
    std::vector<MPI_Request> sent;
    // A member: a failed Run leaves its sends in flight (see ~MpiCopyService).
    std::vector<std::vector<uint64_t>>& payloads = shape_payloads_;
    payloads.clear();
    // Wanted shapes: (message index, sending) per pending receive.
    struct Wanted {
      int peer;
      int tag;
      bool sending;
      uint32_t message;
    };
    std::vector<Wanted> wanted;
    std::vector<bool> sends_same(sends_.size()), recvs_same(recvs_.size());
    auto post = [&](auto& messages, auto& known, bool sending,
                    std::vector<bool>& same) -> Status {
      for (uint32_t i = 0; i < messages.size(); ++i) {
        auto& m = messages[i];
        auto& k = known[{m.peer, m.task_id}];
        same[i] = !k.chunks.empty() && SameBlocks(k.blocks, m.blocks);
        if (!same[i]) {
          k.blocks = m.blocks;
          k.mine = SegmentLengths(m.blocks);
          k.chunks.clear();
        }
        std::vector<uint64_t>& payload = payloads.emplace_back(1, !same[i]);
        if (!same[i])
          payload.insert(payload.end(), k.mine.begin(), k.mine.end());
        sent.push_back(MPI_REQUEST_NULL);
        const int rc = MPI_Isend(
            payloads.back().data(), static_cast<int>(payloads.back().size()),
            MPI_UINT64_T, m.peer, ShapeTag(m.task_id, sending), shape_comm_,
            &sent.back());
        if (rc != MPI_SUCCESS) return MpiError(rc, Name() + ": block lists");
        wanted.push_back({m.peer, ShapeTag(m.task_id, !sending), sending, i});
      }
      return OkStatus();
    };
    payloads.reserve(sends_.size() + recvs_.size());
    REFIT_RETURN_IF_ERROR(post(sends_, known_sends_, true, sends_same));
    REFIT_RETURN_IF_ERROR(post(recvs_, known_recvs_, false, recvs_same));
    internal::IdleTimer idle(timeout_);
    std::vector<uint64_t> lengths;
    while (!wanted.empty()) {
      bool progress = false;
      for (size_t w = 0; w < wanted.size();) {
        const Wanted& want = wanted[w];
        int found = 0;
        MPI_Message msg;
        MPI_Status status;
        int rc = MPI_Improbe(want.peer, want.tag, shape_comm_, &found, &msg,
                             &status);
        if (rc != MPI_SUCCESS) return MpiError(rc, Name() + ": block lists");
        if (!found) {
          ++w;
          continue;
        }
        int count = 0;
        MPI_Get_count(&status, MPI_UINT64_T, &count);
        lengths.resize(count);
        rc = MPI_Mrecv(lengths.data(), count, MPI_UINT64_T, &msg,
                       MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return MpiError(rc, Name() + ": block lists");
        if (count < 1) {
          return Internal(Name() + ": an empty block list from rank " +
                          std::to_string(want.peer));
        }
        const bool changed = lengths[0] != 0;
        const std::span<const uint64_t> peer_lengths =
            std::span<const uint64_t>(lengths).subspan(1);
        if (want.sending) {
          Settle(sends_[want.message], known_sends_, sends_same[want.message],
                 changed, peer_lengths);
        } else {
          Settle(recvs_[want.message], known_recvs_, recvs_same[want.message],
                 changed, peer_lengths);
        }
        wanted[w] = wanted.back();
        wanted.pop_back();
        progress = true;
      }
      if (wanted.empty()) break;
      if (progress) {
        idle.Progress();
      } else if (idle.Expired()) {
        const Wanted& want = wanted.front();
        const uint64_t task = want.sending ? sends_[want.message].task_id
                                           : recvs_[want.message].task_id;
        return DeadlineExceeded(
            Name() + " waited " + Seconds(timeout_) + " for task " +
            std::to_string(task) + (want.sending ? " to" : " from") + " rank " +
            std::to_string(want.peer) + " (its block list)");
      } else {
        idle.Backoff();
      }
    }
    return internal::WaitAll(sent, timeout_, Name() + ": block lists",
                             [&](std::span<const int>) {
                               return Name() + " waited " + Seconds(timeout_) +
                                      " for its peers to take its block lists";
                             });
  }

  // Sets a message's chunks. `same`: this side's blocks are those of the
  // last Run; `peer_changed`: the peer's are not, and `peer` are its new
  // segment lengths. The last Run's chunks are kept only when neither side
  // changed: chunks hold block pointers, so blocks that moved (e.g. transform
  // scratch reallocated) always get new chunks.
  template <typename Block>
  void Settle(Message<Block>& m,
              std::map<std::pair<int, uint64_t>, Known<Block>>& known,
              bool same, bool peer_changed, std::span<const uint64_t> peer) {
    Known<Block>& k = known[{m.peer, m.task_id}];
    if (same && !peer_changed) {
      m.chunks = &k.chunks;
      m.direct = &k.direct;
      return;
    }
    if (peer_changed) k.peer.assign(peer.begin(), peer.end());
    uint64_t mine_total = 0, peer_total = 0;
    for (uint64_t n : k.mine) mine_total += n;
    for (uint64_t n : k.peer) peer_total += n;
    if (mine_total == peer_total) {
      k.chunks =
          CutBlocks(m.blocks, PairChunkSizes(k.mine, k.peer, chunk_bytes_,
                                             kDirectMinBytes, &k.direct));
    } else {
      k.chunks = SplitBlocks(m.blocks, chunk_bytes_);
      k.direct.clear();
    }
    // CutBlocks gives one empty chunk for an empty message.
    k.direct.resize(k.chunks.size(), kPacked);
    m.chunks = &k.chunks;
    m.direct = &k.direct;
  }

  // Posts chunks into free slots, each kind in its own posting order and
  // window, and completes them until all are done, or nothing completes for
  // the timeout. Each kind alone is deadlock-free (its first unfinished chunk
  // is posted on both sides), and the kinds do not wait for each other.
  Status Exchange() {
    std::array<size_t, 2> next_send = {0, 0}, next_recv = {0, 0};
    const int n = static_cast<int>(slots_.size());
    std::vector<int> done(n);
    std::vector<MPI_Status> statuses(n);
    internal::IdleTimer idle(timeout_);
    bool changed = true;  // slots or staging buffers were freed
    while (true) {
      // Each kind and direction posts in its order while it has a free slot
      // (and a free staging buffer, for a chunk that needs one).
      for (int k : {kPacked, kDirect}) {
        while (next_send[k] < send_order_[k].size() && changed) {
          Result<bool> posted = PostSend(k, next_send[k]);
          if (!posted.ok()) return posted.status();
          if (!*posted) break;
          ++next_send[k];
        }
        while (next_recv[k] < recv_order_[k].size() && changed) {
          Result<bool> posted = PostRecv(k, next_recv[k]);
          if (!posted.ok()) return posted.status();
          if (!*posted) break;
          ++next_recv[k];
        }
      }
      if (active_ == 0) return OkStatus();
      int count = 0;
      const int rc = MPI_Testsome(n, requests_.data(), &count, done.data(),
                                  statuses.data());
      if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) {
        return MpiError(rc, Name() + ": MPI_Testsome");
      }
      for (int i = 0; i < count; ++i) {
        REFIT_RETURN_IF_ERROR(
            Complete(done[i], statuses[i], rc == MPI_ERR_IN_STATUS));
      }
      changed = count > 0;
      if (count > 0) {
        idle.Progress();
      } else if (idle.Expired()) {
        return Stalled();
      } else {
        idle.Backoff();
      }
    }
  }

  // After a failed Exchange: cancels every receive in flight and waits for it
  // (MPI guarantees that wait returns), so that no late message lands in the
  // caller's blocks or a staging buffer once Run returns. Sends cannot be
  // withdrawn (MPI 4 deprecates cancelling them): their slots stay busy.
  void WithdrawReceives() {
    for (int slot = 0; slot < static_cast<int>(slots_.size()); ++slot) {
      Slot& s = slots_[slot];
      if (!s.busy || !s.receive) continue;
      // A request completed by the MPI_Testsome that found the error is
      // null already.
      if (requests_[slot] != MPI_REQUEST_NULL) {
        MPI_Cancel(&requests_[slot]);
        MPI_Wait(&requests_[slot], MPI_STATUS_IGNORE);
      }
      if (s.buffer >= 0) free_buffers_[1].push_back(s.buffer);
      s.buffer = -1;
      s.busy = false;
      free_slots_[s.kind][1].push_back(slot);
      --active_;
    }
  }

  // Posts chunk `position` of the send order of `kind`; false when it has
  // to wait for a free slot or staging buffer.
  Result<bool> PostSend(int kind, size_t position) {
    const ChunkRef& ref = send_order_[kind][position];
    const Message<ConstBlock>& m = sends_[ref.message];
    const std::vector<ConstBlock>& blocks = (*m.chunks)[ref.chunk];
    const uint64_t bytes = TotalBytes(blocks);
    const std::byte* buffer = ContiguousBase(blocks);
    const int slot = Occupy(kind, false, position, bytes, buffer == nullptr);
    if (slot < 0) return false;
    Slot& s = slots_[slot];
    if (s.buffer >= 0) {
      const MutBlock staging{staging_[0][s.buffer].Get(bytes), bytes, 1, bytes};
      GatherScatter(blocks, {&staging, 1});
      buffer = staging.base;
    }
    const int rc = MPI_Isend(buffer, static_cast<int>(bytes), MPI_BYTE, m.peer,
                             Tag(m.task_id), comms_[kind], &requests_[slot]);
    if (rc != MPI_SUCCESS) return MpiError(rc, Describe(slot));
    return true;
  }

  Result<bool> PostRecv(int kind, size_t position) {
    const ChunkRef& ref = recv_order_[kind][position];
    const Message<MutBlock>& m = recvs_[ref.message];
    const std::vector<MutBlock>& blocks = (*m.chunks)[ref.chunk];
    const uint64_t bytes = TotalBytes(blocks);
    std::byte* buffer = ContiguousBase(blocks);
    const int slot = Occupy(kind, true, position, bytes, buffer == nullptr);
    if (slot < 0) return false;
    Slot& s = slots_[slot];
    if (s.buffer >= 0) buffer = staging_[1][s.buffer].Get(bytes);
    const int rc = MPI_Irecv(buffer, static_cast<int>(bytes), MPI_BYTE, m.peer,
                             Tag(m.task_id), comms_[kind], &requests_[slot]);
    if (rc != MPI_SUCCESS) return MpiError(rc, Describe(slot));
    return true;
  }

  // Takes a free slot of `kind` and direction for a chunk of `bytes`, and a
  // staging buffer when `staged` (not contiguous on this side); -1 when
  // none is free.
  int Occupy(int kind, bool receive, size_t position, uint64_t bytes,
             bool staged) {
    std::vector<int>& free_slots = free_slots_[kind][receive];
    std::vector<int>& free_buffers = free_buffers_[receive];
    staged = staged && bytes > 0;
    if (free_slots.empty() || (staged && free_buffers.empty())) return -1;
    const int slot = free_slots.back();
    free_slots.pop_back();
    Slot& s = slots_[slot];
    s.busy = true;
    s.position = position;
    s.bytes = bytes;
    s.buffer = -1;
    if (staged) {
      s.buffer = free_buffers.back();
      free_buffers.pop_back();
    }
    ++active_;
    return slot;
  }

  // A completed chunk: checks a receive's size and unpacks staged bytes.
  Status Complete(int slot, const MPI_Status& status, bool check_error) {
    Slot& s = slots_[slot];
    const bool receive = s.receive;
    if (check_error && status.MPI_ERROR != MPI_SUCCESS) {
      int error_class = 0;
      MPI_Error_class(status.MPI_ERROR, &error_class);
      if (receive && error_class == MPI_ERR_TRUNCATE) {
        return SizeMismatch(slot, "more than " + std::to_string(s.bytes));
      }
      return MpiError(status.MPI_ERROR, Describe(slot));
    }
    if (receive) {
      int count = 0;
      MPI_Get_count(&status, MPI_BYTE, &count);
      if (static_cast<uint64_t>(count) != s.bytes) {
        return SizeMismatch(slot, std::to_string(count));
      }
      if (s.buffer >= 0) {
        const ChunkRef& ref = recv_order_[s.kind][s.position];
        const ConstBlock staged{staging_[1][s.buffer].data.get(), s.bytes, 1,
                                s.bytes};
        GatherScatter({&staged, 1}, (*recvs_[ref.message].chunks)[ref.chunk]);
      }
    }
    if (s.buffer >= 0) free_buffers_[receive].push_back(s.buffer);
    s.buffer = -1;
    s.busy = false;
    free_slots_[s.kind][receive].push_back(slot);
    --active_;
    return OkStatus();
  }

  // What a slot carries, for messages.
  struct ChunkInfo {
    bool receive = false;
    int peer = 0;
    uint64_t task_id = 0;
    std::string chunk;  // "(chunk c of n)"
  };

  ChunkInfo Info(int slot) const {
    ChunkInfo info;
    const Slot& s = slots_[slot];
    info.receive = s.receive;
    const ChunkRef& ref =
        (info.receive ? recv_order_ : send_order_)[s.kind][s.position];
    const size_t chunks = info.receive ? recvs_[ref.message].chunks->size()
                                       : sends_[ref.message].chunks->size();
    info.peer =
        info.receive ? recvs_[ref.message].peer : sends_[ref.message].peer;
    info.task_id = ref.key[4];
    info.chunk = "(chunk " + std::to_string(ref.chunk + 1) + " of " +
                 std::to_string(chunks) + ")";
    return info;
  }

  // "rank R: task T from rank P (chunk c of n)", or "to rank P".
  std::string Describe(int slot) const {
    const ChunkInfo c = Info(slot);
    return Name() + ": task " + std::to_string(c.task_id) +
           (c.receive ? " from" : " to") + " rank " + std::to_string(c.peer) +
           " " + c.chunk;
  }

  Status SizeMismatch(int slot, const std::string& got) const {
    return FailedPrecondition("mpi copy service: " + Describe(slot) +
                              " carries " + got + " bytes, " + Name() +
                              " expects " + std::to_string(slots_[slot].bytes));
  }

  // The busy slot of one direction first in the global posting order (over
  // both kinds), or -1.
  int Oldest(bool receive) const {
    int oldest = -1;
    for (int s = 0; s < static_cast<int>(slots_.size()); ++s) {
      if (slots_[s].busy && slots_[s].receive == receive &&
          (oldest < 0 || Key(s) < Key(oldest))) {
        oldest = s;
      }
    }
    return oldest;
  }

  const std::array<uint64_t, 5>& Key(int slot) const {
    const Slot& s = slots_[slot];
    return (s.receive ? recv_order_ : send_order_)[s.kind][s.position].key;
  }

  // The timeout error, naming the oldest receive in flight (else send).
  Status Stalled() const {
    const int oldest = Oldest(true);
    const ChunkInfo c = Info(oldest >= 0 ? oldest : Oldest(false));
    const std::string waited =
        Name() + " waited " + Seconds(timeout_) + " for ";
    const std::string task = "task " + std::to_string(c.task_id);
    const std::string peer = "rank " + std::to_string(c.peer);
    if (c.receive) {
      return DeadlineExceeded(waited + task + " from " + peer + " " + c.chunk);
    }
    return DeadlineExceeded(waited + peer + " to receive " + task + " " +
                            c.chunk);
  }

  std::array<MPI_Comm, 2> comms_;  // per kind of chunk
  MPI_Comm shape_comm_;            // segment lengths, apart from the data
  const int rank_;
  const int world_;
  const uint64_t tag_modulus_;
  const uint64_t chunk_bytes_;
  const std::chrono::milliseconds timeout_;
  bool closed_ = false;
  bool broken_ = false;
  std::vector<Message<ConstBlock>> sends_;
  std::vector<Message<MutBlock>> recvs_;
  // The block lists (segment lengths) this Run sends its peers.
  std::vector<std::vector<uint64_t>> shape_payloads_;
  std::map<std::pair<int, uint64_t>, Known<ConstBlock>> known_sends_;
  std::map<std::pair<int, uint64_t>, Known<MutBlock>> known_recvs_;
  std::array<std::vector<ChunkRef>, 2> send_order_;  // per kind
  std::array<std::vector<ChunkRef>, 2> recv_order_;
  // The slots of all kinds and directions; requests_[i] is slot i's request
  // (MPI_Testsome takes them as one array).
  std::vector<Slot> slots_;
  std::vector<MPI_Request> requests_;
  std::array<std::array<std::vector<int>, 2>, 2> free_slots_;  // [kind][recv]
  // max_inflight staging buffers per direction ([receive]), and the free ones.
  std::array<std::vector<Staging>, 2> staging_;
  std::array<std::vector<int>, 2> free_buffers_;
  int active_ = 0;
};

}  // namespace

Result<std::unique_ptr<CopyService>> ConnectMpiCopyService(
    const MpiWorld& world, const MpiCopyOptions& options) {
  const ScheduleOptions& schedule = options.schedule;
  if (schedule.max_inflight < 1 || options.max_inflight_direct < 1) {
    return InvalidArgument(
        "mpi copy service: max_inflight and max_inflight_direct must be >= 1");
  }
  if (schedule.chunk_bytes() == 0) {
    return InvalidArgument(
        "mpi copy service: max staging bytes must be at least " +
        std::to_string(2 * schedule.max_inflight) +
        " (one byte per chunk in flight)");
  }
  const MPI_Comm parent =
      MPI_Comm_f2c(static_cast<MPI_Fint>(world.comm().fortran));
  const std::string context =
      "rank " + std::to_string(world.rank()) + ": opening the mpi copy service";
  std::array<MPI_Comm, 2> comms;
  for (MPI_Comm& comm : comms) {
    REFIT_ASSIGN_OR_RETURN(comm,
                           internal::DupComm(parent, options.timeout, context));
  }
  REFIT_ASSIGN_OR_RETURN(MPI_Comm shape_comm,
                         internal::DupComm(parent, options.timeout, context));
  int* tag_ub = nullptr;
  int found = 0;
  MPI_Comm_get_attr(comms[kPacked], MPI_TAG_UB, &tag_ub, &found);
  const uint64_t tag_modulus =
      found ? static_cast<uint64_t>(*tag_ub) + 1 : 32768;
  const uint64_t chunk = std::min(schedule.chunk_bytes(), kMaxChunkBytes);
  return std::unique_ptr<CopyService>(std::make_unique<MpiCopyService>(
      comms, shape_comm, world.rank(), world.size(), tag_modulus, chunk,
      options));
}

}  // namespace refit::exec
