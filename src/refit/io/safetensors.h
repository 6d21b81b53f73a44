// Reading and writing safetensors files (huggingface/safetensors README,
// "Format"; layouts.md §2.2). Files are memory-mapped; tensor data is never
// copied on read.
#ifndef REFIT_IO_SAFETENSORS_H_
#define REFIT_IO_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "refit/core/dtype.h"
#include "refit/core/status.h"

namespace refit::io {

/// Header entry of one tensor.
struct TensorInfo {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;  ///< row-major; empty for a 0-d tensor
  uint64_t offset =
      0;  ///< byte offset into the data section (after the header)
  uint64_t nbytes = 0;  ///< = product(shape) * DTypeSize(dtype)
};

/// The validated header of a safetensors file.
struct SafetensorsHeader {
  uint64_t header_bytes = 0;        ///< JSON bytes, without the 8-byte length
  std::vector<TensorInfo> tensors;  ///< sorted by name
  std::map<std::string, std::string> metadata;  ///< `__metadata__`
};

/// Validates the bytes of a whole safetensors file exactly as
/// SafetensorsFile::Open does (which calls it on the mapping); `path` only
/// names the file in messages. A tensor's data starts at byte
/// 8 + header_bytes + offset of `file`. Tensor names must be unique.
/// Errors: kDataLoss naming the file and, where one is at fault, the tensor.
Result<SafetensorsHeader> ParseSafetensors(const std::string& path,
                                           std::span<const std::byte> file);

/// The "weight_map" of the text of a model.safetensors.index.json: tensor name
/// -> shard file name, relative to the index's directory. A shard name must
/// stay inside that directory: not empty, not absolute, no ".." component, no
/// NUL byte.
/// Errors: kDataLoss (not JSON, no "weight_map" object, a shard name that is
/// not a string or not a safe relative path; the message names the tensor).
Result<std::map<std::string, std::string>> ParseSafetensorsIndex(
    const std::string& index_path, std::string_view text);

/// A read-only, memory-mapped safetensors file with a validated header.
class SafetensorsFile {
 public:
  /// Opens and validates `path`: 8-byte little-endian header length bounded by
  /// the file size and by 100,000,000 bytes; UTF-8 JSON object; known dtypes;
  /// shape x dtype size = data_offsets length; offsets inside the file; the
  /// data section covered contiguously from 0 with no gap or overlap.
  /// Data offsets need not be aligned.
  /// Errors: kNotFound (no such file), kIoError (cannot map), kDataLoss (any
  /// validation failure; the message names the file and the tensor).
  static Result<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  /// Tensors sorted by name.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  /// nullptr when absent.
  const TensorInfo* Find(std::string_view name) const;
  /// Pointer to the first byte of the tensor's data (inside the mapping).
  const std::byte* Data(const TensorInfo& t) const {
    return data_section_ + t.offset;
  }
  /// The `__metadata__` map (empty if absent).
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }
  /// Bytes of the header JSON (without the 8-byte length).
  uint64_t header_bytes() const { return header_bytes_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const std::byte* data_section_ = nullptr;
  uint64_t header_bytes_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// A tensor located in one of a checkpoint's files.
struct TensorRef {
  const TensorInfo* info = nullptr;
  const std::byte* data = nullptr;
  const SafetensorsFile* file = nullptr;
};

/// A Hugging Face checkpoint: a directory holding model.safetensors, or
/// model.safetensors.index.json plus its shards, or a single .safetensors file.
class Checkpoint {
 public:
  /// Errors: kNotFound (no safetensors file / index, or a shard named by the
  /// index is missing), kDataLoss (bad index JSON; a tensor the index names is
  /// absent from its shard; a tensor present in two files), and every error of
  /// SafetensorsFile::Open.
  static Result<Checkpoint> Open(const std::string& path);

  /// The directory (or the file, for a single-file checkpoint).
  const std::string& path() const { return path_; }
  /// nullptr when absent.
  const TensorRef* Find(std::string_view name) const;
  /// All tensor names, sorted.
  std::vector<std::string> Names() const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const {
    return files_;
  }

 private:
  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorRef, std::less<>> index_;
};

/// One tensor to write. Either `data` points at nbytes bytes, or `fill` is
/// called once with the tensor's destination bytes (lets callers generate
/// multi-GiB synthetic checkpoints without holding them in memory).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  std::function<void(std::span<std::byte>)> fill;
};

/// Writes a safetensors file: header padded with spaces to a multiple of 8
/// bytes, tensors in the given order, contiguous. Written to "<path>.tmp" and
/// renamed into place, so `path` is never left half-written.
/// Errors: kInvalidArgument (duplicate name, empty name), kIoError.
Status WriteSafetensors(const std::string& path,
                        std::span<const TensorToWrite> tensors,
                        const std::map<std::string, std::string>& metadata);

}  // namespace refit::io

#endif  // REFIT_IO_SAFETENSORS_H_
