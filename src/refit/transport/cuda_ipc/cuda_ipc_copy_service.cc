#include "refit/transport/cuda_ipc/cuda_ipc_copy_service.h"

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "refit/transport/cuda_ipc/ipc_manifest.h"
#include "refit/transport/cuda_ipc/ipc_mappings.h"

namespace refit::exec {

namespace {

using Key = std::pair<int, uint64_t>;  // (peer rank, task id)

// The most messages or manifest words a header may announce (2 GiB of
// words): a corrupt header fails the Run instead of the allocation.
constexpr uint64_t kMaxWords = uint64_t{1} << 28;
using Words = std::vector<uint64_t>;

std::string TaskText(uint64_t task, int src, int dst) {
  return "task " + std::to_string(task) + " from rank " + std::to_string(src) +
         " to rank " + std::to_string(dst);
}

ConstBlock SendWords(std::span<const uint64_t> words) {
  const uint64_t bytes = words.size() * sizeof(uint64_t);
  return {reinterpret_cast<const std::byte*>(words.data()), bytes, 1, bytes};
}
MutBlock RecvWords(std::span<uint64_t> words) {
  const uint64_t bytes = words.size() * sizeof(uint64_t);
  return {reinterpret_cast<std::byte*>(words.data()), bytes, 1, bytes};
}

// The messages this rank receives from one source peer, by task id.
using RecvList = std::vector<std::pair<uint64_t, const std::vector<MutBlock>*>>;
// The messages this rank sends to one destination peer, by task id.
using SendList = std::map<uint64_t, const std::vector<ConstBlock>*>;

// An allocation exported during one Run.
struct Allocation {
  IpcHandle handle;
  uint64_t bytes = 0;
};

// What a receiver remembers of a source peer.
struct SourceState {
  Words key;  // the receive blocks of the last manifest sent
  uint64_t generation = 0;
  bool peer_holds = false;  // the peer confirmed it decoded that manifest
};

// What a sender remembers of a destination peer: its last manifest and the
// mapped base of each of its exports.
struct DestState {
  bool valid = false;
  uint64_t generation = 0;
  ipc::Manifest manifest;
  std::vector<std::byte*> bases;
};

// A receiver's control messages to one source peer in one Run.
struct Outgoing {
  std::array<uint64_t, ipc::kHeaderWords> header{};
  Words manifest;
  bool refused = false;
};

// A sender's control messages from one destination peer in one Run.
struct Incoming {
  std::array<uint64_t, ipc::kHeaderWords> header_words{};
  ipc::Header header;
  Words manifest;
};

class CudaIpcCopyService final : public CopyService {
 public:
  CudaIpcCopyService(std::unique_ptr<CopyService> control,
                     std::unique_ptr<IpcMemory> memory, CudaIpcOptions options)
      : control_(std::move(control)),
        memory_(std::move(memory)),
        options_(options),
        mappings_(memory_.get()) {}

  int rank() const override { return control_->rank(); }

  TransportCapabilities capabilities() const override {
    TransportCapabilities caps;
    caps.reads = caps.writes = memory_->kinds();
    caps.receives_in_place = true;
    caps.max_message_bytes = UINT64_MAX;
    caps.max_staging_bytes = 0;
    return caps;
  }

  Status SubmitSend(int dst_rank, uint64_t task_id,
                    std::vector<ConstBlock> blocks) override {
    if (closed_) return Closed();
    if (!blocks.empty()) memory_->UseDeviceOf(blocks.front().base);
    if (!sends_.emplace(Key(dst_rank, task_id), std::move(blocks)).second) {
      return Twice("task " + std::to_string(task_id) + " to rank " +
                   std::to_string(dst_rank));
    }
    return OkStatus();
  }

  Status SubmitRecv(int src_rank, uint64_t task_id,
                    std::vector<MutBlock> blocks) override {
    if (closed_) return Closed();
    if (!blocks.empty()) memory_->UseDeviceOf(blocks.front().base);
    if (!recvs_.emplace(Key(src_rank, task_id), std::move(blocks)).second) {
      return Twice("task " + std::to_string(task_id) + " from rank " +
                   std::to_string(src_rank));
    }
    return OkStatus();
  }

  Status Run() override {
    if (closed_) return Closed();
    std::map<Key, std::vector<ConstBlock>> sends = std::move(sends_);
    std::map<Key, std::vector<MutBlock>> recvs = std::move(recvs_);
    sends_.clear();
    recvs_.clear();
    return RunOnce(sends, recvs);
  }

  Status CopyLocal(std::span<const ConstBlock> from,
                   std::span<const MutBlock> to) override {
    return memory_->Move(from, to);
  }

  // Before this rank's headers go out (its receive blocks are then free to
  // be written) and before it copies (its sources are written).
  Status OrderAfter(uintptr_t cuda_stream) override {
    return memory_->OrderAfter(cuda_stream);
  }

  Status Close() override {
    if (closed_) return OkStatus();
    closed_ = true;
    dests_.clear();
    Status unmapped = mappings_.ReleaseAll();
    Status closed = control_->Close();
    return unmapped.ok() ? closed : unmapped;
  }

 private:
  static Status Closed() {
    return FailedPrecondition("cuda ipc copy service closed");
  }
  Status Twice(const std::string& what) const {
    return InvalidArgument("cuda ipc copy service: rank " +
                           std::to_string(rank()) + " submitted " + what +
                           " twice in one Run");
  }

  Status RunOnce(const std::map<Key, std::vector<ConstBlock>>& sends,
                 const std::map<Key, std::vector<MutBlock>>& recvs);
  Outgoing PrepareOutgoing(int src, const RecvList& msgs,
                           std::map<const std::byte*, Allocation>& exported,
                           Status& recv_error);
  Result<ipc::Manifest> BuildManifest(
      int src, const RecvList& msgs,
      std::map<const std::byte*, Allocation>& exported);
  Result<const std::byte*> FindOrExport(
      const std::byte* ptr, uint64_t span,
      std::map<const std::byte*, Allocation>& exported);
  Status PrepareDest(int dst, const Incoming& in);
  Status ControlError(const char* phase, const Status& st,
                      const std::map<int, RecvList>& from,
                      const std::map<int, SendList>& to);

  std::unique_ptr<CopyService> control_;
  std::unique_ptr<IpcMemory> memory_;
  CudaIpcOptions options_;
  bool closed_ = false;
  std::map<Key, std::vector<ConstBlock>> sends_;
  std::map<Key, std::vector<MutBlock>> recvs_;
  std::map<int, SourceState> sources_;
  std::map<int, DestState> dests_;
  IpcMappings mappings_;  // after memory_: closes through it
};

// The receive blocks of `msgs` as words, to tell whether they changed: their
// places and their allocations' ids (a tensor freed and reallocated at the
// same address is a new allocation, to export again).
Words BlocksKey(const RecvList& msgs, IpcMemory& memory) {
  Words key;
  for (const auto& [task, blocks] : msgs) {
    key.insert(key.end(), {task, blocks->size()});
    for (const MutBlock& b : *blocks) {
      key.insert(key.end(), {reinterpret_cast<uintptr_t>(b.base), b.run_bytes,
                             b.nruns, b.stride, memory.AllocationId(b.base)});
    }
  }
  return key;
}

Status CudaIpcCopyService::RunOnce(
    const std::map<Key, std::vector<ConstBlock>>& sends,
    const std::map<Key, std::vector<MutBlock>>& recvs) {
  const int me = rank();
  std::map<int, RecvList> from;
  std::map<int, SendList> to;
  for (const auto& [key, blocks] : recvs) {
    if (key.first != me) from[key.first].push_back({key.second, &blocks});
  }
  for (const auto& [key, blocks] : sends) {
    if (key.first != me) to[key.first][key.second] = &blocks;
  }
  // Receiver errors are reported before sender errors.
  Status recv_error, send_error;
  auto note = [](Status& first, Status st) {
    if (first.ok() && !st.ok()) first = std::move(st);
  };

  // 1. Headers: receivers to their sources.
  std::map<const std::byte*, Allocation> exported;  // this Run's exports
  std::map<int, Outgoing> out;
  for (const auto& [src, msgs] : from) {
    out[src] = PrepareOutgoing(src, msgs, exported, recv_error);
  }
  std::map<int, Incoming> in;
  for (auto& [src, o] : out) {
    REFIT_RETURN_IF_ERROR(
        control_->SubmitSend(src, kIpcHeaderTask, {SendWords(o.header)}));
  }
  for (const auto& [dst, tasks] : to) {
    REFIT_RETURN_IF_ERROR(control_->SubmitRecv(
        dst, kIpcHeaderTask, {RecvWords(in[dst].header_words)}));
  }
  if (Status st = control_->Run(); !st.ok()) {
    return ControlError("headers", st, from, to);
  }

  // 2. Manifests, where they changed.
  for (auto& [dst, i] : in) {
    Result<ipc::Header> header = ipc::DecodeHeader(i.header_words);
    if (!header.ok()) {
      return Status(header.status().code(),
                    "cuda ipc copy service: rank " + std::to_string(me) +
                        ", the header from rank " + std::to_string(dst) + ": " +
                        header.status().message());
    }
    i.header = *header;
    if (i.header.messages > kMaxWords || i.header.manifest_words > kMaxWords) {
      return DataLoss("cuda ipc copy service: rank " + std::to_string(me) +
                      ", the header from rank " + std::to_string(dst) +
                      " counts " + std::to_string(i.header.messages) +
                      " messages, " + std::to_string(i.header.manifest_words) +
                      " manifest words");
    }
    if ((i.header.flags & (ipc::kUnchanged | ipc::kRefused)) == 0) {
      i.manifest.resize(i.header.manifest_words);
    }
  }
  for (auto& [src, o] : out) {
    if (o.manifest.empty()) continue;
    REFIT_RETURN_IF_ERROR(
        control_->SubmitSend(src, kIpcManifestTask, {SendWords(o.manifest)}));
  }
  for (auto& [dst, i] : in) {
    if (i.manifest.empty()) continue;
    REFIT_RETURN_IF_ERROR(
        control_->SubmitRecv(dst, kIpcManifestTask, {RecvWords(i.manifest)}));
  }
  if (Status st = control_->Run(); !st.ok()) {
    return ControlError("manifests", st, from, to);
  }

  // 3. The copies: every good message, remote and local, in one Move.
  std::vector<ConstBlock> batch_from;
  std::vector<MutBlock> batch_to;
  std::map<int, Words> done_out;
  std::vector<uint64_t*> batch_codes;  // the done codes of the batch
  for (auto& [dst, i] : in) {
    if (i.header.flags & ipc::kRefused) continue;
    Words& done = done_out[dst];
    done.assign(i.header.messages * ipc::kDoneWordsPerMessage, 0);
    const SendList& tasks = to[dst];
    Status ready = PrepareDest(dst, i);
    const DestState& d = dests_[dst];
    if (ready.ok() && d.manifest.messages.size() != i.header.messages) {
      ready = Internal("cuda ipc copy service: rank " + std::to_string(dst) +
                       "'s header counts " + std::to_string(i.header.messages) +
                       " messages, its manifest " +
                       std::to_string(d.manifest.messages.size()));
    }
    if (!ready.ok()) {
      const ipc::DoneCode code = ready.code() == StatusCode::kDataLoss
                                     ? ipc::DoneCode::kBadManifest
                                     : ipc::DoneCode::kCopyFailed;
      for (size_t k = 0; k < i.header.messages; ++k) {
        done[k * ipc::kDoneWordsPerMessage] = static_cast<uint64_t>(code);
      }
      note(send_error, ready);
      continue;
    }
    std::set<uint64_t> wanted;
    for (size_t k = 0; k < d.manifest.messages.size(); ++k) {
      const ipc::ManifestMessage& m = d.manifest.messages[k];
      uint64_t* code = &done[k * ipc::kDoneWordsPerMessage];
      wanted.insert(m.task_id);
      auto it = tasks.find(m.task_id);
      if (it == tasks.end()) {
        code[0] = static_cast<uint64_t>(ipc::DoneCode::kNotSubmitted);
        continue;
      }
      code[1] = TotalBytes(*it->second);
      if (code[1] != m.total_bytes) {
        code[0] = static_cast<uint64_t>(ipc::DoneCode::kSizeMismatch);
        continue;
      }
      batch_from.insert(batch_from.end(), it->second->begin(),
                        it->second->end());
      for (const ipc::ManifestBlock& b : m.blocks) {
        batch_to.push_back({d.bases[b.export_index] + b.offset, b.run_bytes,
                            b.nruns, b.stride});
      }
      batch_codes.push_back(code);
    }
    for (const auto& [task, blocks] : tasks) {
      if (wanted.count(task) > 0) continue;
      note(send_error,
           FailedPrecondition(
               "cuda ipc copy service: " + TaskText(task, me, dst) + ": rank " +
               std::to_string(dst) + " submitted no receive for it"));
    }
  }
  for (const auto& [key, blocks] : recvs) {
    if (key.first != me) continue;
    auto it = sends.find(key);
    if (it == sends.end()) {
      note(recv_error,
           FailedPrecondition(
               "cuda ipc copy service: " + TaskText(key.second, me, me) +
               " was not submitted by rank " + std::to_string(me)));
    } else if (TotalBytes(it->second) != TotalBytes(blocks)) {
      note(recv_error,
           FailedPrecondition(
               "cuda ipc copy service: " + TaskText(key.second, me, me) +
               " carries " + std::to_string(TotalBytes(it->second)) +
               " bytes, receiver expects " +
               std::to_string(TotalBytes(blocks))));
    } else {
      batch_from.insert(batch_from.end(), it->second.begin(), it->second.end());
      batch_to.insert(batch_to.end(), blocks.begin(), blocks.end());
    }
  }
  for (const auto& [key, blocks] : sends) {
    if (key.first != me || recvs.count(key) > 0) continue;
    note(send_error,
         FailedPrecondition(
             "cuda ipc copy service: " + TaskText(key.second, me, me) +
             ": rank " + std::to_string(me) + " submitted no receive for it"));
  }
  if (!batch_from.empty() || !batch_to.empty()) {
    Status moved = memory_->Move(batch_from, batch_to);
    if (!moved.ok()) {
      for (uint64_t* code : batch_codes) {
        code[0] = static_cast<uint64_t>(ipc::DoneCode::kCopyFailed);
      }
      note(send_error, Status(moved.code(), "cuda ipc copy service: rank " +
                                                std::to_string(me) +
                                                ": copy: " + moved.message()));
    }
  }

  // 4. Done records: senders to their receivers.
  std::map<int, Words> done_in;
  for (auto& [dst, words] : done_out) {
    REFIT_RETURN_IF_ERROR(
        control_->SubmitSend(dst, kIpcDoneTask, {SendWords(words)}));
  }
  for (const auto& [src, msgs] : from) {
    if (out[src].refused) continue;
    Words& words = done_in[src];
    words.resize(msgs.size() * ipc::kDoneWordsPerMessage);
    REFIT_RETURN_IF_ERROR(
        control_->SubmitRecv(src, kIpcDoneTask, {RecvWords(words)}));
  }
  if (Status st = control_->Run(); !st.ok()) {
    return ControlError("done records", st, from, to);
  }
  for (const auto& [src, words] : done_in) {
    const RecvList& msgs = from[src];
    bool holds = true;
    for (size_t k = 0; k < msgs.size(); ++k) {
      const uint64_t code = words[k * ipc::kDoneWordsPerMessage];
      const uint64_t sent = words[k * ipc::kDoneWordsPerMessage + 1];
      const std::string task =
          "cuda ipc copy service: " + TaskText(msgs[k].first, src, me);
      const std::string peer = "rank " + std::to_string(src);
      switch (static_cast<ipc::DoneCode>(code)) {
        case ipc::DoneCode::kOk:
          break;
        case ipc::DoneCode::kSizeMismatch:
          note(recv_error,
               FailedPrecondition(task + " carries " + std::to_string(sent) +
                                  " bytes, receiver expects " +
                                  std::to_string(TotalBytes(*msgs[k].second))));
          break;
        case ipc::DoneCode::kNotSubmitted:
          note(recv_error,
               FailedPrecondition(task + " was not submitted by " + peer));
          break;
        case ipc::DoneCode::kCopyFailed:
          note(recv_error, Internal(task + " was not copied: " + peer +
                                    " failed to map or copy (see its error)"));
          break;
        case ipc::DoneCode::kBadManifest:
          holds = false;
          note(recv_error,
               Internal(task + " was not copied: " + peer +
                        " could not use this rank's manifest (see its error)"));
          break;
        default:
          holds = false;
          note(recv_error, Internal(task + ": unknown done code " +
                                    std::to_string(code) + " from " + peer));
      }
    }
    sources_[src].peer_holds = holds;
  }
  return recv_error.ok() ? send_error : recv_error;
}

Outgoing CudaIpcCopyService::PrepareOutgoing(
    int src, const RecvList& msgs,
    std::map<const std::byte*, Allocation>& exported, Status& recv_error) {
  Outgoing o;
  SourceState& s = sources_[src];
  Words key = BlocksKey(msgs, *memory_);
  ipc::Header h;
  h.messages = msgs.size();
  if (options_.reuse_unchanged_manifests && s.peer_holds && key == s.key) {
    h.flags = ipc::kUnchanged;
    h.generation = s.generation;
    o.header = ipc::EncodeHeader(h);
    return o;
  }
  s.peer_holds = false;
  Result<ipc::Manifest> manifest = BuildManifest(src, msgs, exported);
  if (!manifest.ok()) {
    if (recv_error.ok()) recv_error = manifest.status();
    o.refused = true;
    h.flags = ipc::kRefused;
    h.messages = 0;
  } else {
    o.manifest = ipc::EncodeManifest(*manifest);
    s.key = std::move(key);
    h.generation = ++s.generation;
    h.manifest_words = o.manifest.size();
  }
  o.header = ipc::EncodeHeader(h);
  return o;
}

Result<ipc::Manifest> CudaIpcCopyService::BuildManifest(
    int src, const RecvList& msgs,
    std::map<const std::byte*, Allocation>& exported) {
  ipc::Manifest manifest;
  std::map<const std::byte*, uint64_t> index;  // allocation -> export index
  for (const auto& [task, blocks] : msgs) {
    ipc::ManifestMessage m{task, TotalBytes(*blocks), {}};
    for (const MutBlock& b : *blocks) {
      Result<uint64_t> span = ipc::Footprint(b.run_bytes, b.nruns, b.stride);
      Result<const std::byte*> base =
          span.ok() ? FindOrExport(b.base, *span, exported)
                    : Result<const std::byte*>(span.status());
      if (!base.ok()) {
        return Status(base.status().code(),
                      "cuda ipc copy service: rank " + std::to_string(rank()) +
                          " cannot export the receive blocks of " +
                          TaskText(task, src, rank()) + ": " +
                          base.status().message());
      }
      if (*base == nullptr) continue;  // a block without bytes
      auto [it, added] = index.emplace(*base, manifest.exports.size());
      if (added) {
        manifest.exports.push_back(
            {exported[*base].handle, exported[*base].bytes});
      }
      m.blocks.push_back({it->second, static_cast<uint64_t>(b.base - *base),
                          b.run_bytes, b.nruns, b.stride});
    }
    manifest.messages.push_back(std::move(m));
  }
  return manifest;
}

// The base of the allocation (exported in this Run) that holds the `span`
// bytes at `ptr`; nullptr when `span` is 0.
Result<const std::byte*> CudaIpcCopyService::FindOrExport(
    const std::byte* ptr, uint64_t span,
    std::map<const std::byte*, Allocation>& exported) {
  if (span == 0) return static_cast<const std::byte*>(nullptr);
  auto it = exported.upper_bound(ptr);
  if (it != exported.begin()) {
    --it;
    const uint64_t offset = static_cast<uint64_t>(ptr - it->first);
    if (offset < it->second.bytes && span <= it->second.bytes - offset) {
      return it->first;
    }
  }
  REFIT_ASSIGN_OR_RETURN(IpcExport e, memory_->Export(ptr));
  if (e.offset > e.allocation_bytes || span > e.allocation_bytes - e.offset) {
    return InvalidArgument("the block of " + std::to_string(span) +
                           " bytes at offset " + std::to_string(e.offset) +
                           " ends beyond its allocation of " +
                           std::to_string(e.allocation_bytes) + " bytes");
  }
  const std::byte* base = ptr - e.offset;
  exported[base] = {e.handle, e.allocation_bytes};
  return base;
}

// Makes dests_[dst] hold the manifest `in` names, with its handles mapped.
// Errors: kDataLoss for a corrupt manifest or a generation this rank does
// not hold; the mapping's.
Status CudaIpcCopyService::PrepareDest(int dst, const Incoming& in) {
  DestState& d = dests_[dst];
  const std::string who = "cuda ipc copy service: rank " +
                          std::to_string(rank()) + ", the manifest of rank " +
                          std::to_string(dst) + ": ";
  if (in.header.flags & ipc::kUnchanged) {
    if (d.valid && d.generation == in.header.generation) return OkStatus();
    return DataLoss(who + "unchanged generation " +
                    std::to_string(in.header.generation) +
                    " is not the one held (" +
                    (d.valid ? std::to_string(d.generation) : "none") + ")");
  }
  Result<ipc::Manifest> manifest = ipc::DecodeManifest(in.manifest);
  if (!manifest.ok()) {
    return Status(manifest.status().code(), who + manifest.status().message());
  }
  std::vector<std::byte*> bases;
  for (const ipc::ManifestExport& e : manifest->exports) {
    Result<std::byte*> base = mappings_.Acquire(e.handle);
    if (!base.ok()) {
      for (size_t k = 0; k < bases.size(); ++k) {
        (void)mappings_.Release(manifest->exports[k].handle);
      }
      return Status(base.status().code(), who + base.status().message());
    }
    bases.push_back(*base);
  }
  // The old manifest's mappings go after the new ones are held, so handles
  // in both stay mapped.
  Status unmapped;
  if (d.valid) {
    for (const ipc::ManifestExport& e : d.manifest.exports) {
      Status st = mappings_.Release(e.handle);
      if (unmapped.ok()) unmapped = st;
    }
  }
  d = {true, in.header.generation, *std::move(manifest), std::move(bases)};
  return unmapped;
}

// "task 7 from rank 2 (and 1 more)" for the first of `from`'s messages.
std::string Expected(const std::map<int, RecvList>& from) {
  size_t n = 0;
  for (const auto& [src, msgs] : from) n += msgs.size();
  if (n == 0) return "";
  const auto& [src, msgs] = *from.begin();
  return "expects task " + std::to_string(msgs[0].first) + " from rank " +
         std::to_string(src) +
         (n > 1 ? " (and " + std::to_string(n - 1) + " more)" : "");
}

std::string Sending(const std::map<int, SendList>& to) {
  size_t n = 0;
  for (const auto& [dst, tasks] : to) n += tasks.size();
  if (n == 0) return "";
  const auto& [dst, tasks] = *to.begin();
  return "sends task " + std::to_string(tasks.begin()->first) + " to rank " +
         std::to_string(dst) +
         (n > 1 ? " (and " + std::to_string(n - 1) + " more)" : "");
}

Status CudaIpcCopyService::ControlError(const char* phase, const Status& st,
                                        const std::map<int, RecvList>& from,
                                        const std::map<int, SendList>& to) {
  // A peer may not have seen this Run's manifest: send it again next time.
  for (const auto& [src, msgs] : from) sources_[src].peer_holds = false;
  std::string doing = Expected(from);
  const std::string sending = Sending(to);
  if (!sending.empty()) doing += (doing.empty() ? "" : ", ") + sending;
  if (doing.empty()) doing = "no messages";
  return Status(st.code(), "cuda ipc copy service: rank " +
                               std::to_string(rank()) + " (" + doing +
                               "), exchanging " + phase + ": " + st.message());
}

}  // namespace

Result<std::unique_ptr<CopyService>> ConnectCudaIpcCopyService(
    std::unique_ptr<CopyService> control, std::unique_ptr<IpcMemory> memory,
    CudaIpcOptions options) {
  if (control == nullptr || memory == nullptr) {
    return InvalidArgument(
        "cuda ipc copy service: needs a control copy service and an "
        "IpcMemory");
  }
  return std::unique_ptr<CopyService>(std::make_unique<CudaIpcCopyService>(
      std::move(control), std::move(memory), options));
}

}  // namespace refit::exec
