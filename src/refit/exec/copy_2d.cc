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

// One run, or runs without gaps: its bytes can be cut into rows of any width.
template <typename Block>
bool Flat(const Block& b) {
  return b.nruns == 1 || b.stride == b.run_bytes;
}

// Whole rows of a strided side (at a row start) against a flat side with
// `flat_left` bytes left: the rows that fit, 0 where none does.
template <typename Block>
uint64_t RowsIntoFlat(const Block& rows, uint64_t row, uint64_t col,
                      uint64_t flat_left) {
  if (col != 0 || Flat(rows)) return 0;
  return std::min(rows.nruns - row, flat_left / rows.run_bytes);
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
    // Strided rows packed into a flat buffer, or unpacked out of one.
    const uint64_t pack =
        Flat(t) ? RowsIntoFlat(f, f_row, f_col, Bytes(t) - td) : 0;
    const uint64_t unpack =
        Flat(f) ? RowsIntoFlat(t, t_row, t_col, Bytes(f) - fd) : 0;
    if (f_col == 0 && t_col == 0 && f.run_bytes == t.run_bytes) {
      c.height = std::min(f.nruns - f_row, t.nruns - t_row);
    } else if (pack > 0) {
      c.width = c.dst_pitch = f.run_bytes;
      c.height = pack;
    } else if (unpack > 0) {
      c.width = c.src_pitch = t.run_bytes;
      c.height = unpack;
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
