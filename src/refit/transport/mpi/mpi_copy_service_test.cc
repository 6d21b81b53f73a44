// The MPI copy service and MpiWorld on real processes: run under
// `mpirun -np 3` (every process runs every test, in the same order), and the
// MpiSplitCommTest cases alone under `mpirun -np 4`. main initialises MPI
// itself, as a caller with its own communicator would, and builds the world
// with MpiWorld::FromComm.
#include "refit/transport/mpi/mpi_copy_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "refit/transport/mpi/mpi_gtest.h"
#include "refit/transport/mpi/mpi_world.h"

namespace refit::exec {
namespace {

using ::testing::HasSubstr;

MpiWorld* g_world = nullptr;

int Rank() { return g_world->rank(); }
int World() { return g_world->size(); }

std::byte Pattern(int src, int dst, size_t i) {
  return static_cast<std::byte>(src * 31 + dst * 7 + i * 13 + i / 256);
}

std::unique_ptr<CopyService> Connect(
    uint64_t staging, int inflight,
    std::chrono::milliseconds timeout = std::chrono::seconds(20),
    int inflight_direct = 64) {
  MpiCopyOptions options;
  options.schedule.max_staging_bytes = staging;
  options.schedule.max_inflight = inflight;
  options.max_inflight_direct = inflight_direct;
  options.timeout = timeout;
  auto service = ConnectMpiCopyService(*g_world, options);
  EXPECT_TRUE(service.ok()) << service.status().ToString();
  return service.ok() ? std::move(*service) : nullptr;
}

// The bytes from `src` to `dst`: `bytes` of them, laid out in `buf` as runs
// of `run` bytes every 2 * run (strided) or packed (contiguous).
struct MessageShape {
  uint64_t bytes;
  uint64_t run;
  bool strided;
  uint64_t stride() const { return strided ? 2 * run : run; }
  uint64_t footprint() const { return bytes / run * stride(); }
};

MessageShape ShapeOf(int src, int dst, bool receiver) {
  const uint64_t run = 8 + 8 * ((src + dst) % 3);
  const uint64_t bytes = run * (1 + 97 * (src + 2 * dst + 1));
  return {bytes, run, ((src + dst + receiver) % 2) == 0};
}

// Every rank sends every rank (itself excluded) a message with its own
// layout on each side, several times over one endpoint.
void AllToAll(uint64_t staging, int inflight, int rounds) {
  auto service = Connect(staging, inflight);
  ASSERT_NE(service, nullptr);
  const int me = Rank(), n = World();
  std::vector<std::vector<std::byte>> out(n), in(n);
  for (int round = 0; round < rounds; ++round) {
    for (int peer = 0; peer < n; ++peer) {
      if (peer == me) continue;
      const MessageShape send = ShapeOf(me, peer, false);
      out[peer].assign(send.footprint(), std::byte{0});
      for (uint64_t i = 0; i < send.bytes; ++i) {
        out[peer][i / send.run * send.stride() + i % send.run] =
            Pattern(me, peer, i + round);
      }
      ASSERT_TRUE(service
                      ->SubmitSend(peer, me * n + peer,
                                   {{out[peer].data(), send.run,
                                     send.bytes / send.run, send.stride()}})
                      .ok());
      const MessageShape recv = ShapeOf(peer, me, true);
      in[peer].assign(recv.footprint(), std::byte{0});
      ASSERT_TRUE(service
                      ->SubmitRecv(peer, peer * n + me,
                                   {{in[peer].data(), recv.run,
                                     recv.bytes / recv.run, recv.stride()}})
                      .ok());
    }
    const Status st = service->Run();
    ASSERT_TRUE(st.ok()) << st.ToString();
    for (int peer = 0; peer < n; ++peer) {
      if (peer == me) continue;
      const MessageShape recv = ShapeOf(peer, me, true);
      for (uint64_t i = 0; i < recv.bytes; ++i) {
        ASSERT_EQ(in[peer][i / recv.run * recv.stride() + i % recv.run],
                  Pattern(peer, me, i + round))
            << "from rank " << peer << " byte " << i;
      }
    }
  }
  EXPECT_TRUE(service->Close().ok());
}

TEST(MpiCopyServiceTest, AllToAllWithRoomyStaging) { AllToAll(1 << 20, 4, 2); }

TEST(MpiCopyServiceTest, AllToAllInSmallChunksOneInFlight) {
  // Chunks of 48 bytes: messages straddle many chunks, runs are cut.
  AllToAll(96, 1, 2);
}

TEST(MpiCopyServiceTest, AllToAllInSmallChunksSeveralInFlight) {
  AllToAll(8 * 40, 4, 3);
}

// The blocks of one message move to new memory, or change shape at the same
// address, on one side or both between Runs of one endpoint (as a transform's
// scratch may): every Run must cut the message afresh and deliver every byte
// to the new place. Pieces of 16 and 32 KiB go in place (their own chunks):
// stale pointers would read the last round's bytes or write into the old
// buffers.
TEST(MpiCopyServiceTest, BlocksThatMoveOrChangeBetweenRuns) {
  auto service = Connect(1 << 20, 2);
  ASSERT_NE(service, nullptr);
  const int me = Rank(), n = World();
  constexpr uint64_t kRun = 32 << 10, kRuns = 6, kBytes = kRun * kRuns;
  // Never freed before the end: a new buffer gets new memory.
  std::vector<std::unique_ptr<std::byte[]>> kept;
  auto fresh = [&] {
    kept.push_back(std::make_unique<std::byte[]>(2 * kBytes));
    return kept.back().get();
  };
  std::vector<std::byte*> out(n), in(n);
  // Round 0: first; 1: the sender moves; 2: the receiver moves; 3: nothing
  // changes; 4: both move and the sender's runs halve; 5: the sender's runs
  // double again in place.
  for (int round = 0; round < 6; ++round) {
    const bool send_moves = round == 0 || round == 1 || round == 4;
    const bool recv_moves = round == 0 || round == 2 || round == 4;
    const uint64_t send_run = round == 4 ? kRun / 2 : kRun;
    for (int peer = 0; peer < n; ++peer) {
      if (peer == me) continue;
      if (send_moves) out[peer] = fresh();
      if (recv_moves) in[peer] = fresh();
      std::memset(in[peer], 0, 2 * kBytes);
      for (uint64_t i = 0; i < kBytes; ++i) {
        out[peer][i / send_run * 2 * send_run + i % send_run] =
            Pattern(me, peer, i + round);
      }
      ASSERT_TRUE(service
                      ->SubmitSend(peer, me * n + peer,
                                   {{out[peer], send_run, kBytes / send_run,
                                     2 * send_run}})
                      .ok());
      ASSERT_TRUE(service
                      ->SubmitRecv(peer, peer * n + me,
                                   {{in[peer], kRun, kRuns, 2 * kRun}})
                      .ok());
    }
    const Status st = service->Run();
    ASSERT_TRUE(st.ok()) << st.ToString();
    for (int peer = 0; peer < n; ++peer) {
      if (peer == me) continue;
      for (uint64_t i = 0; i < kBytes; ++i) {
        ASSERT_EQ(in[peer][i / kRun * 2 * kRun + i % kRun],
                  Pattern(peer, me, i + round))
            << "round " << round << " from rank " << peer << " byte " << i;
      }
    }
  }
  EXPECT_TRUE(service->Close().ok());
}

// Messages whose pieces alternate between large ones (in place, their own
// window) and small ones (grouped, staged), sent twice, with windows of one
// or a few chunks of each kind: the two kinds must not block each other nor
// match each other's chunks.
void MixedKinds(int inflight, int inflight_direct) {
  auto service =
      Connect(4096, inflight, std::chrono::seconds(20), inflight_direct);
  ASSERT_NE(service, nullptr);
  const int me = Rank(), n = World();
  // The receiver's regions, 8 bytes apart; the sender's bytes are contiguous.
  auto regions = [](int src, int dst) {
    std::vector<uint64_t> lengths;
    for (int i = 0; i < 12 + src + dst; ++i) {
      lengths.push_back(i % 3 == 0 ? 20000 + 1000 * (i % 5) : 40 + 7 * i);
    }
    return lengths;
  };
  for (int round = 0; round < 2; ++round) {
    std::vector<std::vector<std::byte>> out(n), in(n);
    for (int peer = 0; peer < n; ++peer) {
      if (peer == me) continue;
      uint64_t bytes = 0;
      for (uint64_t l : regions(me, peer)) bytes += l;
      out[peer].resize(bytes);
      for (uint64_t i = 0; i < bytes; ++i) {
        out[peer][i] = Pattern(me, peer, i + round);
      }
      ASSERT_TRUE(service
                      ->SubmitSend(peer, me * n + peer,
                                   {{out[peer].data(), bytes, 1, bytes}})
                      .ok());
      std::vector<MutBlock> blocks;
      const std::vector<uint64_t> lengths = regions(peer, me);
      uint64_t footprint = 0;
      for (uint64_t l : lengths) footprint += l + 8;
      in[peer].assign(footprint, std::byte{0});
      uint64_t at = 0;
      for (uint64_t l : lengths) {
        blocks.push_back({in[peer].data() + at, l, 1, l});
        at += l + 8;
      }
      ASSERT_TRUE(
          service->SubmitRecv(peer, peer * n + me, std::move(blocks)).ok());
    }
    const Status st = service->Run();
    ASSERT_TRUE(st.ok()) << st.ToString();
    for (int peer = 0; peer < n; ++peer) {
      if (peer == me) continue;
      uint64_t at = 0, i = 0;
      for (uint64_t l : regions(peer, me)) {
        for (uint64_t j = 0; j < l; ++j, ++i) {
          ASSERT_EQ(in[peer][at + j], Pattern(peer, me, i + round))
              << "round " << round << " from rank " << peer << " byte " << i;
        }
        at += l + 8;
      }
    }
  }
  EXPECT_TRUE(service->Close().ok());
}

TEST(MpiCopyServiceTest, MixedKindsOneInFlightEach) { MixedKinds(1, 1); }

TEST(MpiCopyServiceTest, MixedKindsSeveralInFlight) { MixedKinds(2, 3); }

TEST(MpiCopyServiceTest, SizeMismatchNamesTaskAndPeer) {
  auto service = Connect(1 << 20, 4);
  ASSERT_NE(service, nullptr);
  std::vector<std::byte> buf(100);
  Status st;
  if (Rank() == 0) {
    ASSERT_TRUE(service->SubmitSend(1, 5, {{buf.data(), 100, 1, 100}}).ok());
    st = service->Run();
    EXPECT_TRUE(st.ok()) << st.ToString();
  } else if (Rank() == 1) {
    ASSERT_TRUE(service->SubmitRecv(0, 5, {{buf.data(), 60, 1, 60}}).ok());
    st = service->Run();
    EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
    EXPECT_THAT(st.message(), HasSubstr("task 5 from rank 0"));
    EXPECT_THAT(st.message(), HasSubstr("rank 1 expects 60"));
  }
  ASSERT_TRUE(g_world->Barrier("after the size test").ok());
}

TEST(MpiCopyServiceTest, SilentPeerTimesOutNamingIt) {
  auto service = Connect(1 << 20, 4, std::chrono::milliseconds(300));
  ASSERT_NE(service, nullptr);
  std::vector<std::byte> buf(64);
  if (Rank() == 1) {
    ASSERT_TRUE(service->SubmitRecv(2, 7, {{buf.data(), 64, 1, 64}}).ok());
    const Status st = service->Run();
    EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded);
    EXPECT_EQ(st.message(),
              "rank 1 waited 0.3 s for task 7 from rank 2 (its block list)");
    EXPECT_FALSE(service->Run().ok());  // unusable after a failed Run
  }
  ASSERT_TRUE(g_world->Barrier("after the timeout test").ok());
}

// A Run that fails with a receive in flight must withdraw it: the caller may
// free or reuse the blocks once Run returns. Rank 1 (0.3 s timeout) receives
// task 9 from rank 0 in place; rank 0 sends it only once rank 2's task 10
// came, and rank 2 sends that only after rank 1 failed. The late message
// must not land in rank 1's blocks (it did, before the fix: a write into
// memory the caller owned again).
TEST(MpiCopyServiceTest, AFailedRunWithdrawsItsReceives) {
  auto service =
      Connect(1 << 20, 4, std::chrono::milliseconds(Rank() == 1 ? 300 : 20000));
  ASSERT_NE(service, nullptr);
  constexpr int kToken = 4242;  // on MPI_COMM_WORLD, which refit does not use
  std::vector<std::byte> buf(64, std::byte{0x11});
  if (Rank() == 0) {
    ASSERT_TRUE(service->SubmitSend(1, 9, {{buf.data(), 64, 1, 64}}).ok());
    std::vector<std::byte> in(64);
    ASSERT_TRUE(service->SubmitRecv(2, 10, {{in.data(), 64, 1, 64}}).ok());
    const Status st = service->Run();
    EXPECT_TRUE(st.ok()) << st.ToString();
  } else if (Rank() == 1) {
    ASSERT_TRUE(service->SubmitRecv(0, 9, {{buf.data(), 64, 1, 64}}).ok());
    const Status st = service->Run();
    EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded);
    EXPECT_THAT(st.message(), HasSubstr("for task 9 from rank 0 (chunk"));
    std::fill(buf.begin(), buf.end(), std::byte{0xEE});
    MPI_Send(nullptr, 0, MPI_BYTE, 2, kToken, MPI_COMM_WORLD);
  } else if (Rank() == 2) {
    MPI_Recv(nullptr, 0, MPI_BYTE, 1, kToken, MPI_COMM_WORLD,
             MPI_STATUS_IGNORE);
    ASSERT_TRUE(service->SubmitSend(0, 10, {{buf.data(), 64, 1, 64}}).ok());
    EXPECT_TRUE(service->Run().ok());
  }
  ASSERT_TRUE(g_world->Barrier("after the late message").ok());
  if (Rank() == 1) {
    // Give MPI's progress engine time to deliver the late message.
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (std::chrono::steady_clock::now() < until) {
      int flag = 0;
      MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag,
                 MPI_STATUS_IGNORE);
    }
    EXPECT_EQ(std::count(buf.begin(), buf.end(), std::byte{0xEE}), 64)
        << "the late message landed after Run failed";
  }
  ASSERT_TRUE(g_world->Barrier("after the withdrawal test").ok());
}

TEST(MpiCopyServiceTest, RejectsBadOptionsAndPeers) {
  MpiCopyOptions options;
  options.schedule.max_staging_bytes = 7;
  EXPECT_EQ(ConnectMpiCopyService(*g_world, options).status().code(),
            StatusCode::kInvalidArgument);
  auto service = Connect(1 << 20, 4);
  ASSERT_NE(service, nullptr);
  EXPECT_EQ(service->SubmitSend(World(), 1, {}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(service->Close().ok());
  EXPECT_FALSE(service->Run().ok());
}

TEST(MpiWorldTest, Collectives) {
  auto all = g_world->AllGather(std::string(Rank() + 1, 'a' + Rank()), "test");
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  for (int r = 0; r < World(); ++r) {
    EXPECT_EQ((*all)[r], std::string(r + 1, 'a' + r));
  }
  std::vector<double> max = {1.0 * Rank(), -1.0 * Rank()};
  ASSERT_TRUE(g_world->AllReduceMax(max, "test").ok());
  EXPECT_EQ(max, (std::vector<double>{World() - 1.0, 0.0}));
  std::vector<uint64_t> sum = {1, static_cast<uint64_t>(Rank())};
  ASSERT_TRUE(g_world->AllReduceSum(sum, "test").ok());
  EXPECT_EQ(sum[0], static_cast<uint64_t>(World()));
  EXPECT_EQ(sum[1], static_cast<uint64_t>(World() * (World() - 1) / 2));
}

TEST(MpiWorldTest, AllToAllVPlacesPiecesInRankOrder) {
  // Rank s sends s + d + 1 bytes to rank d (itself included).
  std::vector<uint64_t> send_counts, recv_counts;
  std::vector<std::byte> send;
  for (int p = 0; p < World(); ++p) {
    send_counts.push_back(Rank() + p + 1);
    recv_counts.push_back(p + Rank() + 1);
    for (size_t i = 0; i < send_counts.back(); ++i) {
      send.push_back(Pattern(Rank(), p, i));
    }
  }
  std::vector<std::byte> recv(send.size());
  const uint64_t max_count = 2 * World() - 1;
  ASSERT_TRUE(
      g_world
          ->AllToAllV(send, send_counts, recv, recv_counts, max_count, "test")
          .ok());
  std::vector<std::byte> want;
  for (int p = 0; p < World(); ++p) {
    for (size_t i = 0; i < recv_counts[p]; ++i) {
      want.push_back(Pattern(p, Rank(), i));
    }
  }
  EXPECT_EQ(recv, want);
  // Checked before any communication, alike on every rank.
  const Status st =
      g_world->AllToAllV(send, send_counts, recv, recv_counts, 1, "test");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("exceeds max_count"));
}

// MPI_COMM_WORLD split into two halves by MPI_Comm_split (even and odd
// ranks, 4 processes): a world and a copy service on each half, ranks being
// the half's. Both halves use the same ranks and task ids at the same time;
// each message carries its sender's MPI_COMM_WORLD rank, so a message that
// crossed halves would show.
TEST(MpiSplitCommTest, CopyServiceOnEachHalf) {
  ASSERT_EQ(World(), 4) << "run under mpirun -np 4";
  const int global = Rank();
  MPI_Comm half = MPI_COMM_NULL;
  ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, global % 2, global, &half),
            MPI_SUCCESS);
  {
    auto world =
        MpiWorld::FromComm({MPI_Comm_c2f(half)}, std::chrono::seconds(20));
    ASSERT_TRUE(world.ok()) << world.status().ToString();
    EXPECT_EQ((*world)->size(), 2);
    EXPECT_EQ((*world)->rank(), global / 2);
    auto all = (*world)->AllGather(std::to_string(global), "split test");
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    EXPECT_EQ(*all, (std::vector<std::string>{std::to_string(global % 2),
                                              std::to_string(global % 2 + 2)}));
    MpiCopyOptions options;
    options.timeout = std::chrono::seconds(20);
    auto service = ConnectMpiCopyService(**world, options);
    ASSERT_TRUE(service.ok()) << service.status().ToString();
    EXPECT_EQ((*service)->rank(), global / 2);
    const int peer = 1 - (*world)->rank();
    std::vector<std::byte> out(4096), in(4096);
    for (size_t i = 0; i < out.size(); ++i) out[i] = Pattern(global, peer, i);
    ASSERT_TRUE(
        (*service)->SubmitSend(peer, 3, {{out.data(), 4096, 1, 4096}}).ok());
    ASSERT_TRUE(
        (*service)->SubmitRecv(peer, 3, {{in.data(), 64, 64, 64}}).ok());
    const Status st = (*service)->Run();
    ASSERT_TRUE(st.ok()) << st.ToString();
    const int sender = global % 2 + 2 * peer;  // its MPI_COMM_WORLD rank
    for (size_t i = 0; i < in.size(); ++i) {
      ASSERT_EQ(in[i], Pattern(sender, (*world)->rank(), i)) << "byte " << i;
    }
    EXPECT_TRUE((*service)->Close().ok());
  }
  MPI_Comm_free(&half);
  ASSERT_TRUE(g_world->Barrier("after the split test").ok());
}

}  // namespace
}  // namespace refit::exec

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  auto world = refit::exec::MpiWorld::FromComm({MPI_Comm_c2f(MPI_COMM_WORLD)},
                                               std::chrono::seconds(20));
  if (!world.ok()) {
    std::fprintf(stderr, "%s\n", world.status().ToString().c_str());
    return 2;
  }
  refit::exec::g_world = world->get();
  if (refit::exec::g_world->size() < 3) {
    std::fprintf(stderr, "run under mpirun -np 3 (or more)\n");
    return 2;
  }
  refit::exec::PrintFullOutputOnRankZero(refit::exec::g_world->rank());
  const int failed = RUN_ALL_TESTS();
  // The world does not finalize MPI it did not initialise.
  const bool broken = (*world)->broken();
  world->reset();
  if (broken) return failed;
  MPI_Finalize();
  return failed;
}
