#include "refit/exec/copy_2d.h"

#include <algorithm>

namespace refit::exec {

namespace {

template <typename Block>
uint64_t Bytes(const Block& b) {
  return b.run_bytes * b.nruns;
}

template <typename Block>
uint64_t Pitch(const Block& b) {
  return b.nruns > 1 ? b.stride : b.run_bytes;
}

}  // namespace

std::vector<Copy2D> PlanCopies2D(std::span<const ConstBlock> from,
                                 std::span<const MutBlock> to) {
  std::vector<Copy2D> out;
  size_t i = 0, j = 0;
  uint64_t fd = 0, td = 0;  // bytes of from[i] / to[j] already planned
  while (i < from.size() && j < to.size()) {
    const ConstBlock& f = from[i];
    const MutBlock& t = to[j];
    if (Bytes(f) == 0) {
      ++i;
      continue;
    }
    if (Bytes(t) == 0) {
      ++j;
      continue;
    }
    const uint64_t f_row = fd / f.run_bytes, f_col = fd % f.run_bytes;
    const uint64_t t_row = td / t.run_bytes, t_col = td % t.run_bytes;
    Copy2D c;
    c.src = f.base + f_row * f.stride + f_col;
    c.dst = t.base + t_row * t.stride + t_col;
    c.src_pitch = Pitch(f);
    c.dst_pitch = Pitch(t);
    c.width = std::min(f.run_bytes - f_col, t.run_bytes - t_col);
    c.height = 1;
    if (f_col == 0 && t_col == 0 && f.run_bytes == t.run_bytes) {
      c.height = std::min(f.nruns - f_row, t.nruns - t_row);
    }
    out.push_back(c);
    fd += c.width * c.height;
    td += c.width * c.height;
    if (fd == Bytes(f)) ++i, fd = 0;
    if (td == Bytes(t)) ++j, td = 0;
  }
  return out;
}

}  // namespace refit::exec
