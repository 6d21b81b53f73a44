// Test helper: two bindings of one model (e.g. a per-expert and a stacked
// checkpoint of one seed) filled into every rank's shards of a layout and
// compared byte for byte.
#ifndef REFIT_CHECKPOINT_SAME_SHARDS_TEST_UTIL_H_
#define REFIT_CHECKPOINT_SAME_SHARDS_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>

#include "refit/checkpoint/checkpoint_shards.h"
#include "refit/core/layout.h"

namespace refit::exec {

/// Fills every rank's shards of `layout` on `world` ranks from `pa` (spec
/// `a`) and from `pb` (spec `b`), expects them equal, and calls `more(p, x,
/// y)` for each parameter p of the rank (further checks) when given.
inline void ExpectSameShards(
    const ModelSpec& a, const BoundCheckpoint& pa, const ModelSpec& b,
    const BoundCheckpoint& pb, const std::string& layout, int world,
    const std::function<void(uint32_t, const ShardArena&, const ShardArena&)>&
        more = {}) {
  auto l = Layout::Create(*ParseParallelConfig(layout), world, a);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  for (int r = 0; r < world; ++r) {
    SCOPED_TRACE(a.architecture + " " + layout + " rank " + std::to_string(r));
    const ShardArena x = ShardArena::ForRank(a, *l, r);
    const ShardArena y = ShardArena::ForRank(b, *l, r);
    FillArena(a, pa, x);
    FillArena(b, pb, y);
    for (uint32_t p : x.params()) {
      ASSERT_EQ(x.shard_bytes(p), y.shard_bytes(p));
      EXPECT_EQ(std::memcmp(x.data(p), y.data(p), x.shard_bytes(p)), 0)
          << a.params[p].name;
      if (more) more(p, x, y);
    }
  }
}

}  // namespace refit::exec

#endif  // REFIT_CHECKPOINT_SAME_SHARDS_TEST_UTIL_H_
