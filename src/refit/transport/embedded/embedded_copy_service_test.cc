#include "refit/transport/embedded/embedded_copy_service.h"

#include <gtest/gtest.h>

#include <thread>

#include "refit/exec/executor.h"

namespace refit::exec {
namespace {

using std::chrono::milliseconds;

// A sender that cannot pack its op (its source shard is missing) still
// posts it, empty: the receiver fails at once on the size instead of
// waiting out the timeout, and each rank reports its own error.
TEST(EmbeddedCopyServiceTest, ExecutorSenderFailureFailsItsReceiverAtOnce) {
  ReshardPlan plan;
  plan.world_size = 2;
  plan.ops.push_back(
      TransferOp{0, 1, 1, 16, {Piece{0, 0, 0, 0, 16, 1, 16, 16}}});
  EmbeddedFabric fabric(2, std::chrono::minutes(10));
  std::vector<std::byte> dst(16);
  std::vector<Status> status(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      auto svc = fabric.Connect(r);
      RankBuffers b{{nullptr}, {r == 1 ? dst.data() : nullptr}};
      status[r] = ExecuteRankPlan(plan, ExtractRankPlan(plan, r), b, *svc);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(status[0].code(), StatusCode::kInternal) << status[0].ToString();
  EXPECT_NE(status[0].message().find("rank 0 holds no source shard"),
            std::string::npos)
      << status[0].ToString();
  EXPECT_EQ(status[1].code(), StatusCode::kFailedPrecondition)
      << status[1].ToString();
  EXPECT_NE(status[1].message().find("carries 0 bytes, receiver expects 16"),
            std::string::npos)
      << status[1].ToString();
}

// Four ranks, each sends its rank byte to every other rank, twice (the
// service is reused across refits).
TEST(EmbeddedCopyServiceTest, AllToAllTwice) {
  constexpr int kWorld = 4;
  EmbeddedFabric fabric(kWorld);
  std::vector<std::vector<std::byte>> out(kWorld,
                                          std::vector<std::byte>(kWorld * 100));
  std::vector<std::vector<std::byte>> in(kWorld);
  for (int r = 0; r < kWorld; ++r) in[r].assign(100, std::byte(r + 1));
  std::vector<Status> status(kWorld);
  std::vector<std::thread> threads;
  for (int r = 0; r < kWorld; ++r) {
    threads.emplace_back([&, r] {
      auto svc = fabric.Connect(r);
      for (int iter = 0; iter < 2; ++iter) {
        for (int p = 0; p < kWorld; ++p) {
          if (p == r) continue;
          (void)svc->SubmitSend(p, 10 + r, {{in[r].data(), 100, 1, 100}});
          (void)svc->SubmitRecv(p, 10 + p,
                                {{out[r].data() + 100 * p, 50, 2, 50}});
        }
        Status st = svc->Run();
        if (!st.ok()) status[r] = st;
      }
      (void)svc->Close();
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < kWorld; ++r) {
    EXPECT_TRUE(status[r].ok()) << status[r].ToString();
    for (int p = 0; p < kWorld; ++p) {
      const std::byte want = p == r ? std::byte{0} : std::byte(p + 1);
      for (int i = 0; i < 100; ++i) ASSERT_EQ(out[r][100 * p + i], want);
    }
  }
}

TEST(EmbeddedCopyServiceTest, MissingPeerTimesOutNamingIt) {
  EmbeddedFabric fabric(2, milliseconds(50));
  auto svc = fabric.Connect(1);
  std::vector<std::byte> buf(8);
  ASSERT_TRUE(svc->SubmitRecv(0, 7, {{buf.data(), 8, 1, 8}}).ok());
  Status st = svc->Run();
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(st.message(),
            "embedded copy service: rank 1 waited 0.05 s with no progress "
            "for task 7 from rank 0");
}

TEST(EmbeddedCopyServiceTest, TimeoutNamesEveryRankWaitedFor) {
  EmbeddedFabric fabric(4, milliseconds(50));
  auto svc = fabric.Connect(3);
  std::vector<std::byte> buf(8);
  ASSERT_TRUE(svc->SubmitRecv(2, 9, {{buf.data(), 2, 1, 2}}).ok());
  ASSERT_TRUE(svc->SubmitRecv(5, 1, {{buf.data() + 2, 2, 1, 2}}).ok());
  ASSERT_TRUE(svc->SubmitRecv(1, 4, {{buf.data() + 4, 2, 1, 2}}).ok());
  ASSERT_TRUE(svc->SubmitRecv(1, 3, {{buf.data() + 6, 2, 1, 2}}).ok());
  Status st = svc->Run();
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(st.message(),
            "embedded copy service: rank 3 waited 0.05 s with no progress "
            "for task 3 from rank 1 (and 3 more from ranks 1, 2, 5)");
}

// A rank whose peer sends only after several timeouts does not fail while
// other ranks keep moving messages: the timeout counts time without progress
// anywhere in the fabric, not since the start of the wait.
TEST(EmbeddedCopyServiceTest, ProgressElsewhereKeepsAWaitAlive) {
  // Margins for a loaded 2-core machine: a 50 ms tick against a 400 ms
  // timeout.
  EmbeddedFabric fabric(4, milliseconds(400));
  std::vector<std::byte> late(16, std::byte{7}), got(16);
  std::vector<std::byte> tick(4, std::byte{1}), ticks(4);
  Status waiter, late_sender;
  std::thread rank0([&] {
    auto svc = fabric.Connect(0);
    (void)svc->SubmitRecv(2, 1, {{got.data(), 16, 1, 16}});
    waiter = svc->Run();
  });
  std::thread rank2([&] {
    auto svc = fabric.Connect(2);
    std::this_thread::sleep_for(milliseconds(1600));  // 4 timeouts
    (void)svc->SubmitSend(0, 1, {{late.data(), 16, 1, 16}});
    late_sender = svc->Run();
  });
  // Rank 1 sends rank 3 a message every 50 ms meanwhile, for 2 s.
  auto ping = [&](int me, int peer) {
    auto svc = fabric.Connect(me);
    for (int i = 0; i < 40; ++i) {
      if (me == 1) (void)svc->SubmitSend(peer, 2, {{tick.data(), 4, 1, 4}});
      if (me == 3) (void)svc->SubmitRecv(peer, 2, {{ticks.data(), 4, 1, 4}});
      ASSERT_TRUE(svc->Run().ok());
      if (me == 1) std::this_thread::sleep_for(milliseconds(50));
    }
  };
  std::thread rank1(ping, 1, 3);
  std::thread rank3(ping, 3, 1);
  rank0.join();
  rank2.join();
  rank1.join();
  rank3.join();
  EXPECT_TRUE(waiter.ok()) << waiter.ToString();
  EXPECT_TRUE(late_sender.ok()) << late_sender.ToString();
  EXPECT_EQ(got, late);
}

TEST(EmbeddedCopyServiceTest, UnconsumedSendTimesOut) {
  EmbeddedFabric fabric(2, milliseconds(50));
  auto svc = fabric.Connect(0);
  std::vector<std::byte> buf(8);
  ASSERT_TRUE(svc->SubmitSend(1, 3, {{buf.data(), 8, 1, 8}}).ok());
  Status st = svc->Run();
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(st.message(),
            "embedded copy service: rank 0 waited 0.05 s with no progress: "
            "1 sends not taken by rank 1");
}

// A sender whose Run failed takes its untaken messages back: its caller may
// free or rewrite the send blocks, and a receiver that comes later must not
// read them (ASan saw a receiver read a freed send block before this); it
// fails at once, naming the withdrawn message.
TEST(EmbeddedCopyServiceTest, AFailedSenderWithdrawsItsMessages) {
  EmbeddedFabric fabric(2, milliseconds(50));
  auto sender = fabric.Connect(0);
  auto receiver = fabric.Connect(1);
  std::vector<std::byte> sent(8, std::byte{1}), got(8, std::byte{7});
  ASSERT_TRUE(sender->SubmitSend(1, 3, {{sent.data(), 8, 1, 8}}).ok());
  EXPECT_EQ(sender->Run().code(), StatusCode::kDeadlineExceeded);
  sent.assign(8, std::byte{0xEE});  // the caller reuses its buffer
  ASSERT_TRUE(receiver->SubmitRecv(0, 3, {{got.data(), 8, 1, 8}}).ok());
  const Status st = receiver->Run();
  EXPECT_EQ(st.code(), StatusCode::kAborted) << st.ToString();
  EXPECT_EQ(st.message(),
            "embedded copy service: task 3 from rank 0 to rank 1 was "
            "withdrawn: rank 0's run failed first");
  EXPECT_EQ(got, std::vector<std::byte>(8, std::byte{7}));
  // Both ranks go on with the next refit.
  sent.assign(8, std::byte{2});
  ASSERT_TRUE(sender->SubmitSend(1, 4, {{sent.data(), 8, 1, 8}}).ok());
  ASSERT_TRUE(receiver->SubmitRecv(0, 4, {{got.data(), 8, 1, 8}}).ok());
  Status send_status;
  std::thread t([&] { send_status = sender->Run(); });
  EXPECT_TRUE(receiver->Run().ok());
  t.join();
  EXPECT_TRUE(send_status.ok()) << send_status.ToString();
  EXPECT_EQ(got, sent);
}

TEST(EmbeddedCopyServiceTest, SizeMismatchIsAnError) {
  EmbeddedFabric fabric(2, milliseconds(1000));
  std::vector<std::byte> a(8), b(4);
  Status recv_status;
  std::thread sender([&] {
    auto svc = fabric.Connect(0);
    (void)svc->SubmitSend(1, 1, {{a.data(), 8, 1, 8}});
    (void)svc->Run();
  });
  auto svc = fabric.Connect(1);
  (void)svc->SubmitRecv(0, 1, {{b.data(), 4, 1, 4}});
  recv_status = svc->Run();
  sender.join();
  ASSERT_FALSE(recv_status.ok());
  EXPECT_NE(recv_status.message().find("carries 8 bytes, receiver expects 4"),
            std::string::npos);
}

TEST(EmbeddedCopyServiceTest, ClosedServiceRefusesWork) {
  EmbeddedFabric fabric(1);
  auto svc = fabric.Connect(0);
  ASSERT_TRUE(svc->Close().ok());
  EXPECT_FALSE(svc->Run().ok());
  EXPECT_FALSE(svc->SubmitSend(0, 0, {}).ok());
}

}  // namespace
}  // namespace refit::exec
