// SocketMesh with ranks as threads of this process (each its own
// connections, as processes would have): connecting, frames on their
// channels, and every failure named.
#include "refit/transport/socket/socket_mesh.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <thread>

#include "refit/io/test_temp_dir.h"
namespace refit::exec {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

using ::refit::testing::TempDir;

// The names of the files in `dir`.
std::vector<std::string> Files(const TempDir& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    out.push_back(e.path().filename().string());
  }
  return out;
}

// Connects `n` ranks on threads and runs `body` on each; their statuses.
std::vector<Status> OnRanks(int n,
                            const std::function<Status(SocketMesh&)>& body,
                            milliseconds timeout = milliseconds(5000),
                            const TempDir* at = nullptr) {
  TempDir local;
  const std::string dir = (at ? at : &local)->str();
  std::vector<Status> out(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      Result<std::unique_ptr<SocketMesh>> mesh =
          SocketMesh::Connect(dir, r, n, timeout);
      out[r] = mesh.ok() ? body(**mesh) : mesh.status();
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

void ExpectAllOk(const std::vector<Status>& statuses) {
  for (size_t r = 0; r < statuses.size(); ++r) {
    EXPECT_TRUE(statuses[r].ok())
        << "rank " << r << ": " << statuses[r].ToString();
  }
}

std::vector<std::byte> Bytes(uint64_t n, int seed) {
  std::vector<std::byte> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = std::byte(i * 131 + seed);
  return v;
}

TEST(SocketMesh, ConnectsEveryPairAndGathersLeavingNoFile) {
  TempDir at;
  std::vector<std::vector<std::string>> got(4);
  ExpectAllOk(OnRanks(
      4,
      [&](SocketMesh& m) -> Status {
        // Rank 2 gathers nothing: an empty string arrives as one.
        const std::string mine =
            m.rank() == 2 ? ""
                          : std::string(1000 * m.rank() + 1, 'a' + m.rank());
        REFIT_ASSIGN_OR_RETURN(got[m.rank()], m.AllGather(0, mine));
        return OkStatus();
      },
      milliseconds(5000), &at));
  for (const auto& all : got) {
    ASSERT_EQ(all.size(), 4u);
    EXPECT_EQ(all[0], "a");
    EXPECT_EQ(all[1], std::string(1001, 'b'));
    EXPECT_EQ(all[2], "");
    EXPECT_EQ(all[3], std::string(3001, 'd'));
  }
  EXPECT_TRUE(Files(at).empty());
}

// Large messages both ways at once (more than the sockets buffer), a send
// to itself, and frames of another channel that arrive first: each waits
// for its receive.
TEST(SocketMesh, MovesFramesOnTheirChannelsInOrder) {
  const auto big0 = Bytes(8 << 20, 1), big1 = Bytes(8 << 20, 2);
  const auto late = Bytes(100, 3), self = Bytes(50, 4);
  ExpectAllOk(OnRanks(2, [&](SocketMesh& m) -> Status {
    const int peer = 1 - m.rank();
    if (m.rank() == 0) {
      const P2pSend early{1, late.data(), late.size()};
      REFIT_RETURN_IF_ERROR(m.Exchange(7, {&early, 1}, {}));
    }
    const auto& mine = m.rank() == 0 ? big0 : big1;
    std::vector<std::byte> got(mine.size()), me(self.size());
    const P2pSend sends[] = {{peer, mine.data(), mine.size()},
                             {m.rank(), self.data(), self.size()}};
    const P2pRecv recvs[] = {{peer, got.data(), got.size()},
                             {m.rank(), me.data(), me.size()}};
    REFIT_RETURN_IF_ERROR(m.Exchange(3, sends, recvs));
    if (got != (m.rank() == 0 ? big1 : big0) || me != self) {
      return Internal("wrong bytes on channel 3");
    }
    if (m.rank() == 1) {
      std::vector<std::byte> l(late.size());
      const P2pRecv r{0, l.data(), l.size()};
      REFIT_RETURN_IF_ERROR(m.Exchange(7, {}, {&r, 1}));
      if (l != late) return Internal("wrong bytes on channel 7");
    }
    return OkStatus();
  }));
}

TEST(SocketMesh, AFrameOfAnotherSizeIsNamedAndBreaksTheMesh) {
  const std::vector<Status> st = OnRanks(2, [&](SocketMesh& m) -> Status {
    std::vector<std::byte> buf(16);
    if (m.rank() == 0) {
      const P2pSend s{1, buf.data(), 8};
      return m.Exchange(1, {&s, 1}, {});
    }
    const P2pRecv r{0, buf.data(), 16};
    const Status first = m.Exchange(1, {}, {&r, 1});
    const Status again = m.Exchange(1, {}, {&r, 1});
    EXPECT_EQ(again.code(), StatusCode::kFailedPrecondition);
    EXPECT_THAT(again.message(), HasSubstr("unusable"));
    return first;
  });
  EXPECT_TRUE(st[0].ok());
  EXPECT_EQ(st[1].code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(st[1].message(),
              HasSubstr("rank 0 sent 8 bytes where 16 were expected"));
}

TEST(SocketMesh, ASilentPeerIsADeadlineNamingIt) {
  const std::vector<Status> st = OnRanks(
      3,
      [&](SocketMesh& m) -> Status {
        if (m.rank() != 1) {
          std::this_thread::sleep_for(milliseconds(600));
          return OkStatus();
        }
        std::vector<std::byte> buf(4);
        const P2pRecv r{2, buf.data(), 4};
        return m.Exchange(1, {}, {&r, 1});
      },
      milliseconds(200));
  EXPECT_EQ(st[1].code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(st[1].message(), HasSubstr("left with ranks 2"));
}

TEST(SocketMesh, APeerThatClosesOwingBytesIsNamed) {
  const std::vector<Status> st = OnRanks(2, [&](SocketMesh& m) -> Status {
    if (m.rank() == 0) return OkStatus();  // closes at once
    std::vector<std::byte> buf(4);
    const P2pRecv r{0, buf.data(), 4};
    return m.Exchange(1, {}, {&r, 1});
  });
  EXPECT_EQ(st[1].code(), StatusCode::kIoError);
  EXPECT_THAT(st[1].message(), HasSubstr("rank 0 closed its connection"));
}

// A peer that leaves owing nothing does not fail the others' exchanges.
TEST(SocketMesh, APeerThatLeavesOwingNothingIsFine) {
  ExpectAllOk(OnRanks(3, [&](SocketMesh& m) -> Status {
    if (m.rank() == 0) return OkStatus();
    std::this_thread::sleep_for(milliseconds(100));
    std::vector<std::byte> a(64, std::byte{1}), b(64);
    const int peer = 3 - m.rank();
    const P2pSend s{peer, a.data(), a.size()};
    const P2pRecv r{peer, b.data(), b.size()};
    REFIT_RETURN_IF_ERROR(m.Exchange(1, {&s, 1}, {&r, 1}));
    return a == b ? OkStatus() : Internal("wrong bytes");
  }));
}

TEST(SocketMesh, ARankThatNeverJoinsIsNamed) {
  TempDir at;
  Result<std::unique_ptr<SocketMesh>> alone =
      SocketMesh::Connect(at.str(), 0, 3, milliseconds(200));
  EXPECT_EQ(alone.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(alone.status().message(), HasSubstr("from ranks 1 2"));
  Result<std::unique_ptr<SocketMesh>> last =
      SocketMesh::Connect(at.str(), 2, 3, milliseconds(200));
  EXPECT_EQ(last.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(last.status().message(), HasSubstr("no rank 0 listening"));
  EXPECT_TRUE(Files(at).empty());
}

TEST(SocketMesh, BadArgumentsAreRefusedByName) {
  EXPECT_EQ(SocketMesh::Connect("/tmp", 2, 2, milliseconds(10)).status().code(),
            StatusCode::kInvalidArgument);
  const Status st = SocketMesh::Connect("/tmp/" + std::string(200, 'x'), 0, 1,
                                        milliseconds(10))
                        .status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("a Unix socket takes fewer than"));
}

}  // namespace
}  // namespace refit::exec
