// Safetensors reading (mmap + header validation), checkpoint discovery, and
// writing (tmp file + rename).
#include "refit/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

namespace refit::io {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using TensorIndex = std::map<std::string, TensorRef, std::less<>>;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;

std::string ErrnoText() {
  return std::error_code(errno, std::generic_category()).message();
}

// 'name' with control characters escaped, so messages stay on one line.
std::string Quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

// product(shape) * DTypeSize(dtype); nullopt for a negative dim or overflow.
std::optional<uint64_t> NumBytes(const std::vector<int64_t>& shape,
                                 DType dtype) {
  uint64_t n = DTypeSize(dtype);
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) {
      return std::nullopt;
    }
  }
  return n;
}

// ---------------------------------------------------------------- reading

Status MapFd(const std::string& path, int fd, void** map, size_t* size) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return IoError(path + ": fstat: " + ErrnoText());
  if (!S_ISREG(st.st_mode)) return IoError(path + ": not a regular file");
  if (st.st_size < 8) {
    return DataLoss(path + ": file is " + std::to_string(st.st_size) +
                    " bytes, too short for the 8-byte header length");
  }
  void* p = ::mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return IoError(path + ": mmap: " + ErrnoText());
  *map = p;
  *size = st.st_size;
  return OkStatus();
}

Status MapFile(const std::string& path, void** map, size_t* size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFound(path + ": no such file");
    return IoError(path + ": open: " + ErrnoText());
  }
  Status status = MapFd(path, fd, map, size);
  ::close(fd);
  return status;
}

Result<uint64_t> ReadHeaderLength(const std::string& path,
                                  const std::byte* base, uint64_t file_size) {
  if (file_size < 8) {
    return DataLoss(path + ": file is " + std::to_string(file_size) +
                    " bytes, too short for the 8-byte header length");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) {
    n = (n << 8) | std::to_integer<uint64_t>(base[i]);
  }
  if (n > kMaxHeaderBytes) {
    return DataLoss(path + ": header length " + std::to_string(n) +
                    " exceeds the limit of 100,000,000 bytes");
  }
  if (n > file_size - 8) {
    return DataLoss(path + ": header length " + std::to_string(n) +
                    " runs past the end of the " + std::to_string(file_size) +
                    "-byte file");
  }
  return n;
}

// The header JSON. A top-level key given twice is an error: nlohmann keeps
// the last entry silently, so two entries could describe one tensor.
Result<json> ParseHeaderJson(const std::string& path, const std::byte* p,
                             uint64_t n) {
  const char* text = reinterpret_cast<const char*>(p);
  if (n == 0 || text[0] != '{') {
    return DataLoss(path + ": header does not start with '{'");
  }
  std::set<std::string, std::less<>> keys;
  std::optional<std::string> duplicate;
  auto check_key = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && !duplicate &&
        !keys.insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text, text + n, check_key);
  } catch (const json::parse_error& e) {
    return DataLoss(path + ": header is not valid JSON (error at byte " +
                    std::to_string(e.byte) + ")");
  } catch (const json::exception& e) {  // out_of_range: a number like 1e999
    return DataLoss(path + ": header is not valid JSON (" + e.what() + ")");
  }
  if (duplicate) {
    return DataLoss(path + ": tensor " + Quote(*duplicate) +
                    " appears twice in the header");
  }
  return header;
}

bool ParseShape(const json& j, std::vector<int64_t>* shape) {
  if (!j.is_array()) return false;
  for (const json& d : j) {
    if (!d.is_number_unsigned()) return false;
    uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return false;
    }
    shape->push_back(static_cast<int64_t>(v));
  }
  return true;
}

bool ParseOffsets(const json& j, uint64_t* begin, uint64_t* end) {
  if (!j.is_array() || j.size() != 2 || !j[0].is_number_unsigned() ||
      !j[1].is_number_unsigned()) {
    return false;
  }
  *begin = j[0].get<uint64_t>();
  *end = j[1].get<uint64_t>();
  return *begin <= *end;
}

Result<TensorInfo> ParseEntry(const std::string& path, const std::string& name,
                              const json& j) {
  const std::string where = path + ": tensor " + Quote(name) + ": ";
  if (!j.is_object()) return DataLoss(where + "entry is not a JSON object");
  auto dtype = j.find("dtype");
  if (dtype == j.end() || !dtype->is_string()) {
    return DataLoss(where + "missing or non-string dtype");
  }
  Result<DType> parsed = ParseDType(dtype->get_ref<const std::string&>());
  if (!parsed.ok()) {
    return DataLoss(where + "unknown dtype " +
                    Quote(dtype->get_ref<const std::string&>()));
  }
  TensorInfo t;
  t.name = name;
  t.dtype = *parsed;
  auto shape = j.find("shape");
  if (shape == j.end() || !ParseShape(*shape, &t.shape)) {
    return DataLoss(where + "shape is not an array of non-negative integers");
  }
  auto offsets = j.find("data_offsets");
  uint64_t begin = 0, end = 0;
  if (offsets == j.end() || !ParseOffsets(*offsets, &begin, &end)) {
    return DataLoss(where +
                    "data_offsets is not [begin, end] with begin <= end");
  }
  std::optional<uint64_t> nbytes = NumBytes(t.shape, t.dtype);
  if (!nbytes || end - begin != *nbytes) {
    return DataLoss(
        where + "data_offsets length " + std::to_string(end - begin) +
        " != shape " + ShapeString(t.shape) + " x " +
        std::string(DTypeName(t.dtype)) + " (" +
        (nbytes ? std::to_string(*nbytes) + " bytes" : "overflow") + ")");
  }
  t.offset = begin;
  t.nbytes = *nbytes;
  return t;
}

Status ParseMetadata(const std::string& path, const json& j,
                     std::map<std::string, std::string>* metadata) {
  if (!j.is_object()) {
    return DataLoss(path + ": __metadata__ is not a JSON object");
  }
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) {
      return DataLoss(path + ": __metadata__ value of " + Quote(key) +
                      " is not a string");
    }
    metadata->emplace(key, value.get<std::string>());
  }
  return OkStatus();
}

Status ParseEntries(const std::string& path, const json& header,
                    std::vector<TensorInfo>* tensors,
                    std::map<std::string, std::string>* metadata) {
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      REFIT_RETURN_IF_ERROR(ParseMetadata(path, value, metadata));
      continue;
    }
    REFIT_ASSIGN_OR_RETURN(TensorInfo t, ParseEntry(path, key, value));
    tensors->push_back(std::move(t));
  }
  return OkStatus();
}

// The tensors, sorted by offset, must tile [0, data_bytes) exactly.
Status CheckCoverage(const std::string& path, std::vector<TensorInfo>* tensors,
                     uint64_t data_bytes) {
  std::sort(tensors->begin(), tensors->end(), [](const auto& a, const auto& b) {
    return std::tie(a.offset, a.nbytes, a.name) <
           std::tie(b.offset, b.nbytes, b.name);
  });
  uint64_t expected = 0;
  std::string prev = "the data section starts";  // what ends at `expected`
  for (const TensorInfo& t : *tensors) {
    if (t.offset != expected) {
      return DataLoss(path + ": tensor " + Quote(t.name) + ": data starts at " +
                      std::to_string(t.offset) + " but " + prev + " at " +
                      std::to_string(expected) +
                      (t.offset > expected ? " (gap)" : " (overlap)"));
    }
    expected = t.offset + t.nbytes;
    prev = "tensor " + Quote(t.name) + " ends";
  }
  if (expected != data_bytes) {
    return DataLoss(path + ": data section is " + std::to_string(data_bytes) +
                    " bytes but the tensors cover " + std::to_string(expected) +
                    (tensors->empty() ? ""
                                      : " (last: tensor " +
                                            Quote(tensors->back().name) + ")"));
  }
  return OkStatus();
}

// ------------------------------------------------------------- checkpoints

// The files of a checkpoint and, with an index, its tensor -> file map.
struct CheckpointFiles {
  std::vector<std::string> paths;
  std::string index_path;
  std::map<std::string, size_t> weight_map;  // tensor -> index into paths
};

CheckpointFiles SingleFile(std::string path) {
  CheckpointFiles files;
  files.paths.push_back(std::move(path));
  return files;
}

Result<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError(path + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return IoError(path + ": read failed");
  return text.str();
}

// A shard name that stays inside the index's directory (no path traversal).
bool IsSafeShardName(const std::string& name) {
  if (name.empty() || name.find('\0') != std::string::npos) return false;
  const fs::path path(name);
  if (path.has_root_path()) return false;
  for (const fs::path& part : path) {
    if (part == "..") return false;
  }
  return true;
}

Result<CheckpointFiles> ReadIndex(const fs::path& dir,
                                  const std::string& index_path) {
  REFIT_ASSIGN_OR_RETURN(std::string text, ReadTextFile(index_path));
  REFIT_ASSIGN_OR_RETURN(auto weight_map,
                         ParseSafetensorsIndex(index_path, text));
  CheckpointFiles files;
  files.index_path = index_path;
  std::map<std::string, size_t> shard_ids;
  for (const auto& [name, shard] : weight_map) {
    auto [it, added] = shard_ids.emplace(shard, files.paths.size());
    if (added) {
      std::string shard_path = (dir / it->first).string();
      std::error_code ec;
      if (!fs::is_regular_file(shard_path, ec)) {
        return NotFound(index_path + ": shard " + Quote(it->first) +
                        " of tensor " + Quote(name) + " does not exist");
      }
      files.paths.push_back(shard_path);
    }
    files.weight_map.emplace(name, it->second);
  }
  return files;
}

Result<CheckpointFiles> ListSafetensors(const std::string& path) {
  CheckpointFiles files;
  std::error_code ec;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code type_ec;
    if (it->path().extension() == ".safetensors" &&
        it->is_regular_file(type_ec)) {
      files.paths.push_back(it->path().string());
    }
  }
  if (ec) return IoError(path + ": cannot list directory: " + ec.message());
  if (files.paths.empty()) {
    return NotFound(path +
                    ": no .safetensors file or model.safetensors.index.json");
  }
  std::sort(files.paths.begin(), files.paths.end());
  return files;
}

Result<CheckpointFiles> FindCheckpointFiles(const std::string& path) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (fs::is_regular_file(st)) return SingleFile(path);
  if (!fs::is_directory(st)) {
    return NotFound(path + ": no such file or directory");
  }
  const fs::path dir(path);
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(index, ec)) return ReadIndex(dir, index.string());
  const fs::path single = dir / "model.safetensors";
  if (fs::is_regular_file(single, ec)) {
    return SingleFile(single.string());
  }
  return ListSafetensors(path);
}

Status AddTensors(const std::string& ckpt_path, const SafetensorsFile& file,
                  TensorIndex* index) {
  for (const TensorInfo& t : file.tensors()) {
    auto [it, added] =
        index->emplace(t.name, TensorRef{&t, file.Data(t), &file});
    if (!added) {
      return DataLoss(ckpt_path + ": tensor " + Quote(t.name) + " is in both " +
                      it->second.file->path() + " and " + file.path());
    }
  }
  return OkStatus();
}

Status CheckWeightMap(
    const CheckpointFiles& found,
    const std::vector<std::unique_ptr<SafetensorsFile>>& files,
    const TensorIndex& index) {
  for (const auto& [name, id] : found.weight_map) {
    auto it = index.find(name);
    if (it == index.end() || it->second.file != files[id].get()) {
      return DataLoss(found.index_path + ": tensor " + Quote(name) +
                      " is not in its shard " + files[id]->path());
    }
  }
  return OkStatus();
}

// ---------------------------------------------------------------- writing

// Validates names and shapes; returns each tensor's byte size.
Result<std::vector<uint64_t>> TensorSizes(
    const std::string& path, std::span<const TensorToWrite> tensors) {
  std::set<std::string_view> seen;
  std::vector<uint64_t> sizes;
  uint64_t total = 0;
  for (const TensorToWrite& t : tensors) {
    const std::string where = path + ": tensor " + Quote(t.name) + ": ";
    if (t.name.empty() || t.name == "__metadata__") {
      return InvalidArgument(where + "invalid tensor name");
    }
    if (!seen.insert(t.name).second) {
      return InvalidArgument(where + "duplicate tensor name");
    }
    std::optional<uint64_t> n = NumBytes(t.shape, t.dtype);
    if (!n || __builtin_add_overflow(total, *n, &total)) {
      return InvalidArgument(where + "invalid shape " + ShapeString(t.shape));
    }
    if (*n > 0 && t.data == nullptr && !t.fill) {
      return InvalidArgument(where + "has neither data nor fill");
    }
    sizes.push_back(*n);
  }
  return sizes;
}

// The header JSON padded with spaces to a multiple of 8 bytes.
Result<std::string> BuildHeader(
    const std::string& path, std::span<const TensorToWrite> tensors,
    const std::vector<uint64_t>& sizes,
    const std::map<std::string, std::string>& metadata) {
  // Keys sorted by name (std::map): insertion stays O(log n) for headers of
  // 100k tensors; readers order tensors by their offsets, not by key order.
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    header[tensors[i].name] = {
        {"dtype", std::string(DTypeName(tensors[i].dtype))},
        {"shape", tensors[i].shape},
        {"data_offsets", json::array({offset, offset + sizes[i]})}};
    offset += sizes[i];
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::type_error&) {
    return InvalidArgument(path +
                           ": a tensor name or metadata string is not "
                           "valid UTF-8");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

// "<path>.tmp", removed on destruction unless renamed by Commit().
class TmpFile {
 public:
  explicit TmpFile(const std::string& dest) : path_(dest + ".tmp") {}
  ~TmpFile() {
    if (fd_ >= 0) ::close(fd_);
    if (created_) ::unlink(path_.c_str());
  }
  TmpFile(const TmpFile&) = delete;
  TmpFile& operator=(const TmpFile&) = delete;

  // Creates the file with `size` (> 0) bytes reserved on disk.
  Status Create(uint64_t size) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return IoError(path_ + ": open: " + ErrnoText());
    created_ = true;
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      return IoError(path_ + ": ftruncate: " + ErrnoText());
    }
    int rc = ::posix_fallocate(fd_, 0, static_cast<off_t>(size));
    if (rc != 0) {
      return IoError(path_ + ": posix_fallocate: " +
                     std::error_code(rc, std::generic_category()).message());
    }
    return OkStatus();
  }

  Status Write(uint64_t offset, const void* data, uint64_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::pwrite(fd_, p, std::min<uint64_t>(n, 1 << 30),
                           static_cast<off_t>(offset));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return IoError(path_ + ": write: " + ErrnoText());
      p += w;
      offset += w;
      n -= w;
    }
    return OkStatus();
  }

  // Maps [offset, offset + n) writable and hands it to `fill`.
  Status Fill(uint64_t offset, uint64_t n,
              const std::function<void(std::span<std::byte>)>& fill) {
    if (n == 0) {
      if (fill) fill({});
      return OkStatus();
    }
    const uint64_t page = ::sysconf(_SC_PAGESIZE);
    const uint64_t start = offset - offset % page;
    const size_t len = offset + n - start;
    void* map = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd_,
                       static_cast<off_t>(start));
    if (map == MAP_FAILED) return IoError(path_ + ": mmap: " + ErrnoText());
    fill({static_cast<std::byte*>(map) + (offset - start), n});
    if (::munmap(map, len) != 0) {
      return IoError(path_ + ": munmap: " + ErrnoText());
    }
    return OkStatus();
  }

  Status Commit(const std::string& dest) {
    if (::fsync(fd_) != 0) return IoError(path_ + ": fsync: " + ErrnoText());
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return IoError(path_ + ": close: " + ErrnoText());
    if (::rename(path_.c_str(), dest.c_str()) != 0) {
      return IoError(path_ + ": rename to " + dest + ": " + ErrnoText());
    }
    created_ = false;
    return OkStatus();
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool created_ = false;
};

std::string LittleEndian64(uint64_t v) {
  std::string out(8, '\0');
  for (char& c : out) {
    c = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

}  // namespace

// ------------------------------------------------------------------ parsing

Result<SafetensorsHeader> ParseSafetensors(const std::string& path,
                                           std::span<const std::byte> file) {
  SafetensorsHeader h;
  REFIT_ASSIGN_OR_RETURN(h.header_bytes,
                         ReadHeaderLength(path, file.data(), file.size()));
  REFIT_ASSIGN_OR_RETURN(
      json header, ParseHeaderJson(path, file.data() + 8, h.header_bytes));
  REFIT_RETURN_IF_ERROR(ParseEntries(path, header, &h.tensors, &h.metadata));
  REFIT_RETURN_IF_ERROR(
      CheckCoverage(path, &h.tensors, file.size() - 8 - h.header_bytes));
  std::sort(h.tensors.begin(), h.tensors.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return h;
}

Result<std::map<std::string, std::string>> ParseSafetensorsIndex(
    const std::string& index_path, std::string_view text) {
  json index;
  try {
    index = json::parse(text);
  } catch (const json::parse_error& e) {
    return DataLoss(index_path + ": not valid JSON (error at byte " +
                    std::to_string(e.byte) + ")");
  } catch (const json::exception& e) {  // out_of_range: a number like 1e999
    return DataLoss(index_path + ": not valid JSON (" + e.what() + ")");
  }
  auto weight_map = index.find("weight_map");
  if (weight_map == index.end() || !weight_map->is_object()) {
    return DataLoss(index_path + ": no \"weight_map\" object");
  }
  std::map<std::string, std::string> shards;
  for (const auto& [name, shard] : weight_map->items()) {
    if (!shard.is_string()) {
      return DataLoss(index_path + ": weight_map entry of " + Quote(name) +
                      " is not a string");
    }
    const std::string& file = shard.get_ref<const std::string&>();
    if (!IsSafeShardName(file)) {
      return DataLoss(index_path + ": weight_map entry of " + Quote(name) +
                      ": shard " + Quote(file) +
                      " is not a relative path inside the checkpoint");
    }
    shards.emplace(name, file);
  }
  return shards;
}

// ----------------------------------------------------------- SafetensorsFile

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  REFIT_RETURN_IF_ERROR(MapFile(path, &f->map_, &f->map_size_));
  const auto* base = static_cast<const std::byte*>(f->map_);
  REFIT_ASSIGN_OR_RETURN(SafetensorsHeader h,
                         ParseSafetensors(path, {base, f->map_size_}));
  f->header_bytes_ = h.header_bytes;
  f->tensors_ = std::move(h.tensors);
  f->metadata_ = std::move(h.metadata);
  f->data_section_ = base + 8 + f->header_bytes_;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = std::lower_bound(
      tensors_.begin(), tensors_.end(), name,
      [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

// ---------------------------------------------------------------- Checkpoint

Result<Checkpoint> Checkpoint::Open(const std::string& path) {
  REFIT_ASSIGN_OR_RETURN(CheckpointFiles found, FindCheckpointFiles(path));
  Checkpoint ckpt;
  ckpt.path_ = path;
  for (const std::string& file_path : found.paths) {
    REFIT_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                           SafetensorsFile::Open(file_path));
    REFIT_RETURN_IF_ERROR(AddTensors(path, *file, &ckpt.index_));
    ckpt.files_.push_back(std::move(file));
  }
  REFIT_RETURN_IF_ERROR(CheckWeightMap(found, ckpt.files_, ckpt.index_));
  return ckpt;
}

const TensorRef* Checkpoint::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &it->second;
}

std::vector<std::string> Checkpoint::Names() const {
  std::vector<std::string> names;
  names.reserve(index_.size());
  for (const auto& [name, ref] : index_) names.push_back(name);
  return names;
}

// ------------------------------------------------------------------ writing

Status WriteSafetensors(const std::string& path,
                        std::span<const TensorToWrite> tensors,
                        const std::map<std::string, std::string>& metadata) {
  REFIT_ASSIGN_OR_RETURN(std::vector<uint64_t> sizes,
                         TensorSizes(path, tensors));
  REFIT_ASSIGN_OR_RETURN(std::string header,
                         BuildHeader(path, tensors, sizes, metadata));
  const std::string prefix = LittleEndian64(header.size()) + header;
  uint64_t total = prefix.size();
  for (uint64_t n : sizes) total += n;
  TmpFile tmp(path);
  REFIT_RETURN_IF_ERROR(tmp.Create(total));
  REFIT_RETURN_IF_ERROR(tmp.Write(0, prefix.data(), prefix.size()));
  uint64_t offset = prefix.size();
  for (size_t i = 0; i < tensors.size(); ++i) {
    REFIT_RETURN_IF_ERROR(tensors[i].data != nullptr
                              ? tmp.Write(offset, tensors[i].data, sizes[i])
                              : tmp.Fill(offset, sizes[i], tensors[i].fill));
    offset += sizes[i];
  }
  return tmp.Commit(path);
}

}  // namespace refit::io
