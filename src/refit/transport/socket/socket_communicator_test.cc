// The "socket" group: its collectives and copy services on channels of
// their own, and the NCCL / CUDA IPC groups over it (control only).
#include "refit/socket_communicator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "refit/exec/copy_service.h"
#include "refit/io/test_temp_dir.h"

namespace refit {
namespace {

TEST(SocketCommunicatorTest, CollectivesAndServicesShareTheConnections) {
  const ::refit::testing::TempDir folder;
  const std::string dir = folder.str();
  constexpr int kRanks = 3;
  std::vector<Status> statuses(kRanks);
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      statuses[r] = [&]() -> Status {
        REFIT_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> group,
                               SocketCommunicator(dir, r, kRanks));
        EXPECT_EQ(group->method(), "socket");
        EXPECT_FALSE(group->shares_process());
        REFIT_ASSIGN_OR_RETURN(auto first, group->CreateCopyService());
        REFIT_ASSIGN_OR_RETURN(auto second, group->CreateCopyService());
        // Each rank sends the next one 1000 bytes on each service, with a
        // gather between the submits and the runs.
        std::vector<std::byte> out(1000, std::byte(r)), in1(1000), in2(1000);
        const int next = (r + 1) % kRanks, prev = (r + kRanks - 1) % kRanks;
        for (auto* s : {first.get(), second.get()}) {
          REFIT_RETURN_IF_ERROR(
              s->SubmitSend(next, 5, {{out.data(), 1000, 1, 1000}}));
        }
        REFIT_RETURN_IF_ERROR(
            first->SubmitRecv(prev, 5, {{in1.data(), 1000, 1, 1000}}));
        REFIT_RETURN_IF_ERROR(
            second->SubmitRecv(prev, 5, {{in2.data(), 1000, 1, 1000}}));
        REFIT_ASSIGN_OR_RETURN(auto all,
                               group->AllGather(std::to_string(r * 11)));
        EXPECT_EQ(all, (std::vector<std::string>{"0", "11", "22"}));
        REFIT_RETURN_IF_ERROR(second->Run());
        REFIT_RETURN_IF_ERROR(first->Run());
        const std::vector<std::byte> want(1000, std::byte(prev));
        return in1 == want && in2 == want ? OkStatus()
                                          : Internal("wrong bytes");
      }();
    });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_TRUE(statuses[r].ok())
        << "rank " << r << ": " << statuses[r].ToString();
  }
}

}  // namespace
}  // namespace refit
