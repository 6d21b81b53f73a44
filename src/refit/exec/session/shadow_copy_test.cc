// ShadowCopy (SwapOptions::atomic): adjacent and overlapping views share one
// region at their own offsets, separate buffers get separate regions, Fill
// and Publish copy the views' bytes and nothing between them, and memory
// other than the host's is refused.
#include "refit/exec/session/shadow_copy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

namespace refit::exec {
namespace {

using ::testing::HasSubstr;

TensorView View(std::byte* data, int64_t bytes,
                MemoryKind memory = MemoryKind::kHost) {
  TensorView v;
  v.data = data;
  v.dtype = DType::kU8;
  v.shape = {bytes};
  v.memory = memory;
  return v;
}

std::byte* At(const ShadowCopy& s, const std::string& name) {
  return static_cast<std::byte*>(s.model().tensors.at(name).data);
}

// Bytes 0, 1, 2, ... (mod 256) from `first`.
std::vector<std::byte> Counting(size_t n, int first) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(first + i);
  return v;
}

TEST(ShadowCopyTest, AdjacentViewsShareARegionAtTheirOffsets) {
  alignas(64) std::byte buf[256];
  ShardedModel m;
  // a and b adjacent, c overlapping b: one region [8, 120); d apart.
  m.tensors["a"] = View(buf + 8, 40);
  m.tensors["b"] = View(buf + 48, 40);
  m.tensors["c"] = View(buf + 80, 40);
  m.tensors["d"] = View(buf + 200, 16);
  auto s = ShadowCopy::Create(m, 3);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->bytes(), 112u + 16u);
  EXPECT_EQ(At(*s, "b") - At(*s, "a"), 40);
  EXPECT_EQ(At(*s, "c") - At(*s, "a"), 72);
  for (const char* n : {"a", "b", "c", "d"}) {
    const std::byte* p = At(*s, n);
    EXPECT_TRUE(p < buf || p >= buf + sizeof(buf)) << n;
    const auto caller = reinterpret_cast<uintptr_t>(m.tensors.at(n).data);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, caller % 64) << n;
    EXPECT_EQ(s->model().tensors.at(n).shape, m.tensors.at(n).shape);
  }
}

TEST(ShadowCopyTest, FillAndPublishCopyTheViewsOnly) {
  std::vector<std::byte> buf = Counting(128, 0);
  ShardedModel m;
  m.tensors["x"] = View(buf.data() + 16, 32);  // [16, 48)
  m.tensors["y"] = View(buf.data() + 48, 16);  // [48, 64), fused with x
  m.tensors["z"] = View(buf.data() + 96, 8);   // [96, 104)
  auto s = ShadowCopy::Create(m, 0);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  s->Fill();
  EXPECT_EQ(std::memcmp(At(*s, "x"), buf.data() + 16, 48), 0);
  EXPECT_EQ(std::memcmp(At(*s, "z"), buf.data() + 96, 8), 0);
  // The refit writes part of x and all of z; the caller's bytes stay.
  std::memset(At(*s, "x") + 4, 0xAA, 8);
  std::memset(At(*s, "z"), 0xBB, 8);
  EXPECT_EQ(buf, Counting(128, 0));
  // Bytes between views change meanwhile (another owner): never published.
  std::memset(buf.data() + 64, 0xCC, 32);
  std::vector<std::byte> want = buf;
  std::memset(want.data() + 20, 0xAA, 8);
  std::memset(want.data() + 96, 0xBB, 8);
  s->Publish();
  EXPECT_EQ(buf, want);
}

// The next call's shadow takes the memory of the last one's regions where
// the caller's tensors stayed, and allocates the others.
TEST(ShadowCopyTest, RecyclesTheRegionsOfAPreviousShadow) {
  std::vector<std::byte> a = Counting(64, 0), b = Counting(64, 100);
  ShardedModel m;
  m.tensors["a"] = View(a.data(), 64);
  m.tensors["b"] = View(b.data(), 64);
  auto first = ShadowCopy::Create(m, 0);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  const std::byte* kept = At(*first, "a");
  const std::byte* moved = At(*first, "b");
  std::vector<std::byte> c = Counting(32, 7);
  m.tensors["b"] = View(c.data(), 32);  // b now elsewhere
  auto second = ShadowCopy::Create(m, 0, &*first);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(At(*second, "a"), kept);
  EXPECT_NE(At(*second, "b"), moved);
  EXPECT_EQ(second->bytes(), 96u);
  second->Fill();
  EXPECT_EQ(std::memcmp(At(*second, "a"), a.data(), 64), 0);
  EXPECT_EQ(std::memcmp(At(*second, "b"), c.data(), 32), 0);
}

TEST(ShadowCopyTest, UnbindableViewsKeepTheirPointers) {
  alignas(64) std::byte buf[64];
  ShardedModel m;
  m.tensors["null"] = View(nullptr, 16);
  m.tensors["empty"] = View(buf, 0);
  TensorView strided = View(buf + 16, 16);
  strided.shape = {4, 4};
  strided.strides = {8, 1};
  m.tensors["strided"] = strided;
  m.tensors["negative"] = View(buf + 32, -1);
  auto s = ShadowCopy::Create(m, 0);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->bytes(), 0u);
  for (const auto& [name, view] : m.tensors) {
    EXPECT_EQ(s->model().tensors.at(name).data, view.data) << name;
  }
}

TEST(ShadowCopyTest, RefusesCudaMemoryNamingRankAndTensor) {
  alignas(64) std::byte buf[64];
  ShardedModel m;
  m.tensors["host"] = View(buf, 16);
  m.tensors["dev.b"] = View(buf + 16, 16, MemoryKind::kCuda);
  m.tensors["dev.a"] = View(buf + 32, 16, MemoryKind::kCuda);
  auto s = ShadowCopy::Create(m, 2);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("rank 2: destination tensor "
                                              "dev.a: atomic needs host "
                                              "memory, not cuda"));
  EXPECT_EQ(ShadowCopy::CheckHost(m, 2).message(), s.status().message());
}

}  // namespace
}  // namespace refit::exec
