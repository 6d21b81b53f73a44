// libFuzzer target: the bytes of a safetensors file, validated by
// ParseSafetensors (what SafetensorsFile::Open runs on its mapping). Any input
// may be rejected; an accepted header must describe unique tensors that tile
// the data section, which this target checks and then reads (ASan sees a range
// outside the input: libFuzzer passes an exactly sized heap copy).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "refit/io/safetensors.h"

namespace {

void Fail(const char* what) {
  std::fprintf(stderr, "safetensors_fuzz: accepted header: %s\n", what);
  std::abort();
}

// Data-section bytes a tensor covers, checked against the input.
void CheckTensors(const refit::io::SafetensorsHeader& h,
                  std::span<const std::byte> file) {
  const uint64_t data_bytes = file.size() - 8 - h.header_bytes;
  const std::byte* data = file.data() + 8 + h.header_bytes;
  uint64_t covered = 0;
  unsigned sum = 0;
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const refit::io::TensorInfo& t = h.tensors[i];
    if (i > 0 && !(h.tensors[i - 1].name < t.name)) Fail("names not unique");
    if (t.offset > data_bytes || t.nbytes > data_bytes - t.offset) {
      Fail("tensor outside the data section");
    }
    covered += t.nbytes;
    if (t.nbytes > 0) {
      sum += std::to_integer<unsigned>(data[t.offset]) +
             std::to_integer<unsigned>(data[t.offset + t.nbytes - 1]);
    }
  }
  if (covered != data_bytes) Fail("tensors do not tile the data section");
  // Keeps the reads above from being optimised away.
  volatile unsigned sink = sum;
  (void)sink;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> file(
      reinterpret_cast<const std::byte*>(data), size);
  refit::Result<refit::io::SafetensorsHeader> h =
      refit::io::ParseSafetensors("fuzz.safetensors", file);
  if (h.ok()) CheckTensors(*h, file);
  return 0;
}
