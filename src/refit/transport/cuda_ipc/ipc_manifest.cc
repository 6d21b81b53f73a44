#include "refit/transport/cuda_ipc/ipc_manifest.h"

#include <cstring>
#include <string>

namespace refit::exec::ipc {

namespace {

// "RFTIPC01": the first word of a header.
constexpr uint64_t kMagic = 0x3130435049544652ull;
constexpr size_t kHandleWords = IpcHandle::kBytes / sizeof(uint64_t);
constexpr size_t kExportWords = kHandleWords + 1;
constexpr size_t kBlockWords = 5;

// Reads words in order; any read past the end marks the reader bad.
class Reader {
 public:
  explicit Reader(std::span<const uint64_t> words) : words_(words) {}
  uint64_t Next() {
    if (at_ >= words_.size()) {
      bad_ = true;
      return 0;
    }
    return words_[at_++];
  }
  // True when at least `n` items of `words_each` words remain.
  bool Has(uint64_t n, uint64_t words_each) const {
    return !bad_ && n <= (words_.size() - at_) / words_each;
  }
  bool bad() const { return bad_; }
  bool done() const { return at_ == words_.size(); }

 private:
  std::span<const uint64_t> words_;
  size_t at_ = 0;
  bool bad_ = false;
};

Status Corrupt(const std::string& what) {
  return DataLoss("cuda ipc manifest: " + what);
}

}  // namespace

std::array<uint64_t, kHeaderWords> EncodeHeader(const Header& header) {
  return {kMagic, header.flags, header.messages, header.manifest_words,
          header.generation};
}

Result<Header> DecodeHeader(std::span<const uint64_t, kHeaderWords> words) {
  if (words[0] != kMagic) return Corrupt("not a header");
  return Header{words[1], words[2], words[3], words[4]};
}

Result<uint64_t> Footprint(uint64_t run_bytes, uint64_t nruns,
                           uint64_t stride) {
  if (run_bytes == 0 || nruns == 0) return uint64_t{0};
  uint64_t span = 0;
  if (__builtin_mul_overflow(nruns - 1, stride, &span) ||
      __builtin_add_overflow(span, run_bytes, &span)) {
    return InvalidArgument("block of " + std::to_string(nruns) + " runs of " +
                           std::to_string(run_bytes) + " bytes, stride " +
                           std::to_string(stride) + ", overflows 64 bits");
  }
  return span;
}

std::vector<uint64_t> EncodeManifest(const Manifest& manifest) {
  std::vector<uint64_t> words = {manifest.exports.size(),
                                 manifest.messages.size()};
  for (const ManifestExport& e : manifest.exports) {
    uint64_t handle[kHandleWords];
    std::memcpy(handle, e.handle.bytes.data(), IpcHandle::kBytes);
    words.insert(words.end(), handle, handle + kHandleWords);
    words.push_back(e.allocation_bytes);
  }
  for (const ManifestMessage& m : manifest.messages) {
    words.insert(words.end(), {m.task_id, m.total_bytes, m.blocks.size()});
    for (const ManifestBlock& b : m.blocks) {
      words.insert(words.end(),
                   {b.export_index, b.offset, b.run_bytes, b.nruns, b.stride});
    }
  }
  return words;
}

Result<Manifest> DecodeManifest(std::span<const uint64_t> words) {
  Reader in(words);
  Manifest out;
  const uint64_t nexports = in.Next(), nmessages = in.Next();
  if (!in.Has(nexports, kExportWords)) return Corrupt("truncated export table");
  out.exports.resize(nexports);
  for (ManifestExport& e : out.exports) {
    uint64_t handle[kHandleWords];
    for (uint64_t& w : handle) w = in.Next();
    std::memcpy(e.handle.bytes.data(), handle, IpcHandle::kBytes);
    e.allocation_bytes = in.Next();
  }
  // Each message takes at least 3 words.
  if (!in.Has(nmessages, 3)) return Corrupt("truncated message list");
  out.messages.resize(nmessages);
  for (ManifestMessage& m : out.messages) {
    m.task_id = in.Next();
    m.total_bytes = in.Next();
    const uint64_t nblocks = in.Next();
    if (!in.Has(nblocks, kBlockWords)) {
      return Corrupt("truncated blocks of task " + std::to_string(m.task_id));
    }
    m.blocks.resize(nblocks);
    uint64_t total = 0;
    for (ManifestBlock& b : m.blocks) {
      b = {in.Next(), in.Next(), in.Next(), in.Next(), in.Next()};
      const std::string where = "a block of task " + std::to_string(m.task_id);
      if (b.export_index >= nexports) {
        return Corrupt(where + " names export " +
                       std::to_string(b.export_index) + " of " +
                       std::to_string(nexports));
      }
      Result<uint64_t> span = Footprint(b.run_bytes, b.nruns, b.stride);
      uint64_t bytes = 0, end = 0;
      if (!span.ok() || __builtin_mul_overflow(b.run_bytes, b.nruns, &bytes) ||
          __builtin_add_overflow(total, bytes, &total) ||
          __builtin_add_overflow(b.offset, *span, &end) ||
          end > out.exports[b.export_index].allocation_bytes) {
        return Corrupt(where + " ends beyond its allocation");
      }
    }
    if (total != m.total_bytes) {
      return Corrupt("the blocks of task " + std::to_string(m.task_id) +
                     " hold " + std::to_string(total) + " bytes, not " +
                     std::to_string(m.total_bytes));
    }
  }
  if (in.bad() || !in.done()) return Corrupt("trailing words");
  return out;
}

}  // namespace refit::exec::ipc
