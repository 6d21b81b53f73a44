#include "refit/exec/format_transform.h"

#include <gtest/gtest.h>

#include <cstring>

#include "refit/core/test_models.h"

namespace refit::exec {
namespace {

// A BF16 Qwen3-MoE refit tp=1 -> tp=2 into block FP8 on the receiver: every
// quantised shard must be received whole before it is quantised.
struct Fixture {
  ModelSpec spec = testing::MustSpec(testing::Qwen3Config(1, 2, "bfloat16"));
  RefitTopology topo = testing::MustTopology(spec, "tp=1", 2, "tp=2", 2, true);
  FormatPlan formats;
  ReshardPlan plan;
  DstTensors dst;

  Fixture() {
    PrecisionOptions o;
    EXPECT_TRUE(ApplyDstDType("fp8-block", o).ok());
    o.quantize_on = ConvertSide::kRecv;
    formats = *ResolveFormats(spec, topo, o);
    plan = *BuildReshardPlan(spec, topo, formats.plan_options());
    dst = DstTensors::ForRank(DestinationSpec(spec, formats), formats, topo.dst,
                              0);
  }
  // Rank 0's local op (tp=1 source ranks hold everything).
  const TransferOp& LocalOp() const {
    for (const TransferOp& op : plan.ops) {
      if (op.src_rank == 0 && op.dst_rank == 0) return op;
    }
    ADD_FAILURE() << "no local op";
    return plan.ops.front();
  }
};

// Feeds `times` copies of every quantised piece of the local op into the
// transform as received, with zero bytes.
Status Receive(Fixture& f, FormatTransform& t, int times, bool skip_first) {
  const TransferOp& op = f.LocalOp();
  bool skipped = false;
  for (const Piece& p : op.pieces) {
    if (!t.ShouldTransform(p.dst_param)) continue;
    if (skip_first && !skipped) {
      skipped = true;
      continue;
    }
    for (int i = 0; i < times; ++i) {
      REFIT_ASSIGN_OR_RETURN(auto blocks, t.PrepareRecv(op, p));
      for (const MutBlock& b : blocks) {
        for (uint64_t r = 0; r < b.nruns; ++r) {
          std::memset(b.base + r * b.stride, 0, b.run_bytes);
        }
      }
      REFIT_RETURN_IF_ERROR(t.FinalizeRecv(op, p, blocks));
    }
  }
  return t.Finish();
}

TEST(FormatTransformTest, WholeShardsQuantiseOnce) {
  Fixture f;
  FormatTransform t(f.spec, f.formats, &f.dst, 0);
  EXPECT_TRUE(Receive(f, t, 1, false).ok());
  // All-zero blocks: data +0, scale_inv 1.0 (TE's rule for amax 0).
  const uint32_t p = 0 + [&] {
    for (uint32_t i = 0; i < f.spec.params.size(); ++i) {
      if (f.formats.params[i].kind == FormatKind::kFp8Block) return i;
    }
    return 0u;
  }();
  const float one = 1.0f;
  EXPECT_EQ(std::memcmp(f.dst.scales(p), &one, 4), 0);
  EXPECT_GT(t.staging_bytes(), 0u);
}

TEST(FormatTransformTest, MissingSliceIsAnError) {
  Fixture f;
  FormatTransform t(f.spec, f.formats, &f.dst, 0);
  const Status st = Receive(f, t, 1, true);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInternal);
  EXPECT_NE(st.message().find("transform: rank 0 tensor decoder.layers.0."),
            std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("(duplicate or missing slices?)"),
            std::string::npos);
}

TEST(FormatTransformTest, DuplicateSliceIsAnError) {
  Fixture f;
  FormatTransform t(f.spec, f.formats, &f.dst, 0);
  const Status st = Receive(f, t, 2, false);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("duplicate or missing"), std::string::npos);
}

TEST(WireBuffersTest, ResetReusesTheSameMemory) {
  WireBuffers w;
  const std::byte* a = w.Allocate(100)->data();
  const std::byte* b = w.Allocate(5000)->data();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 64, 0u);
  const uint64_t held = w.held_bytes();
  w.Reset();
  EXPECT_EQ(w.Allocate(100)->data(), a);
  EXPECT_EQ(w.Allocate(4000)->data(), b);  // smaller fits
  EXPECT_EQ(w.held_bytes(), held);
  EXPECT_EQ(w.Allocate(0)->size(), 0u);
}

}  // namespace
}  // namespace refit::exec
