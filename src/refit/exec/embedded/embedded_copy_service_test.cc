#include "refit/exec/embedded/embedded_copy_service.h"

#include <gtest/gtest.h>

#include <thread>

namespace refit::exec {
namespace {

using std::chrono::milliseconds;

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
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("task 7 from rank 0"), std::string::npos);
}

TEST(EmbeddedCopyServiceTest, UnconsumedSendTimesOut) {
  EmbeddedFabric fabric(2, milliseconds(50));
  auto svc = fabric.Connect(0);
  std::vector<std::byte> buf(8);
  ASSERT_TRUE(svc->SubmitSend(1, 3, {{buf.data(), 8, 1, 8}}).ok());
  Status st = svc->Run();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("rank 0 has 1 sends"), std::string::npos);
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
