#include "refit/transport/conformance/process_harness.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>

#include "refit/socket_communicator.h"

extern char** environ;

namespace refit::exec::conformance {

namespace {

constexpr const char* kRankVar = "REFIT_CONFORMANCE_RANK";
constexpr const char* kCallVar = "REFIT_CONFORMANCE_CALL";
constexpr const char* kDirVar = "REFIT_CONFORMANCE_DIR";

std::string StatusFile(const std::string& dir, int rank) {
  return dir + "/status-" + std::to_string(rank);
}

std::string CurrentTest() {
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  return test == nullptr
             ? ""
             : std::string(test->test_suite_name()) + "." + test->name();
}

void WriteStatus(const std::string& path, const Status& st) {
  std::ofstream out(path);
  out << static_cast<int>(st.code()) << "\n" << st.message();
}

// The status a rank wrote; kInternal naming the rank when there is none.
Status ReadStatus(const std::string& path, int rank, int wait_status) {
  std::ifstream in(path);
  int code = -1;
  if (!(in >> code)) {
    return Internal("rank " + std::to_string(rank) +
                    " ended without a status (wait status " +
                    std::to_string(wait_status) + ")");
  }
  in.get();
  std::stringstream message;
  message << in.rdbuf();
  return code == 0 ? OkStatus()
                   : Status(static_cast<StatusCode>(code), message.str());
}

// Waits up to `seconds` for `child`, then kills it. Its wait status.
int Reap(pid_t child, int seconds) {
  int status = 0;
  for (int i = 0; i < seconds * 10; ++i) {
    if (waitpid(child, &status, WNOHANG) == child) return status;
    usleep(100000);
  }
  kill(child, SIGKILL);
  waitpid(child, &status, 0);
  return status;
}

}  // namespace

ProcessHarness::ProcessHarness(int ranks, ServiceOverGroup service,
                               RegionMemory* regions, std::string skip)
    : ranks_(ranks),
      service_(std::move(service)),
      regions_(regions),
      skip_(std::move(skip)) {}

// Calls are counted per case: a rank process runs the case from its start
// and takes part in the one call it was spawned for.
Result<std::vector<Status>> ProcessHarness::RunOnRanks(
    const EndpointOptions& options, const RankBody& body) {
  if (CurrentTest() != test_) test_ = CurrentTest(), calls_ = 0;
  const int call = calls_++;
  const char* rank = std::getenv(kRankVar);
  if (rank == nullptr) return Spawn(call);
  if (call != std::atoi(std::getenv(kCallVar))) {
    return std::vector<Status>(ranks_);  // another process's call
  }
  return RunRank(std::atoi(rank), options, body);
}

Result<std::vector<Status>> ProcessHarness::RunRank(
    int rank, const EndpointOptions& options, const RankBody& body) {
  const std::string dir = std::getenv(kDirVar);
  SocketOptions control;
  control.timeout = options.timeout;
  if (options.max_staging_bytes > 0) {
    control.max_staging_bytes = options.max_staging_bytes;
  }
  Result<std::unique_ptr<Communicator>> group =
      SocketCommunicator(dir, rank, ranks_, control);
  std::unique_ptr<Communicator> keep;
  Result<std::unique_ptr<CopyService>> service =
      group.ok() ? service_(**group, keep)
                 : Result<std::unique_ptr<CopyService>>(group.status());
  Status st = service.status();
  if (service.ok()) {
    st = body(rank, **service);
    const Status closed = (*service)->Close();
    if (st.ok()) st = closed;
  }
  WriteStatus(StatusFile(dir, rank), st);
  // The connections stay open until every rank has its status (whatever the
  // case's timeout): a finished rank is a quiet peer, not a closed one.
  for (int q = 0, waited = 0; q < ranks_ && waited < 120000; waited += 10) {
    if (access(StatusFile(dir, q).c_str(), F_OK) == 0) {
      ++q;
    } else {
      usleep(10000);
    }
  }
  std::vector<Status> out(ranks_);
  out[rank] = st;
  return out;
}

Result<std::vector<Status>> ProcessHarness::Spawn(int call) {
  if (!folder_) folder_.emplace();
  // A folder per spawn: the rendezvous and the statuses.
  const std::string dir = *folder_ / std::to_string(spawns_++);
  mkdir(dir.c_str(), 0700);
  std::string filter = "--gtest_filter=" + CurrentTest();
  std::string exe(4096, '\0');
  const ssize_t n = readlink("/proc/self/exe", exe.data(), exe.size() - 1);
  if (n <= 0) return IoError("readlink /proc/self/exe");
  exe.resize(n);
  std::vector<pid_t> children;
  for (int r = 0; r < ranks_; ++r) {
    std::vector<std::string> vars = {
        std::string(kRankVar) + "=" + std::to_string(r),
        std::string(kCallVar) + "=" + std::to_string(call),
        std::string(kDirVar) + "=" + dir};
    std::vector<char*> env;  // without GTEST_* (sharding, output files)
    for (char** v = environ; *v != nullptr; ++v) {
      if (std::strncmp(*v, "GTEST_", 6) != 0) env.push_back(*v);
    }
    for (std::string& v : vars) env.push_back(v.data());
    env.push_back(nullptr);
    char* argv[] = {exe.data(), filter.data(), nullptr};
    // The rank's own output goes to DIR/log-R (kept with the folder until
    // the harness ends), not into the case's.
    const std::string log = dir + "/log-" + std::to_string(r);
    posix_spawn_file_actions_t io;
    posix_spawn_file_actions_init(&io);
    posix_spawn_file_actions_addopen(&io, 1, log.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&io, 1, 2);
    pid_t child = 0;
    const int spawned =
        posix_spawn(&child, exe.c_str(), &io, nullptr, argv, env.data());
    posix_spawn_file_actions_destroy(&io);
    if (spawned != 0) {
      for (pid_t c : children) Reap(c, 0);
      return IoError("posix_spawn of rank " + std::to_string(r));
    }
    children.push_back(child);
  }
  std::vector<Status> out(ranks_);
  for (int r = 0; r < ranks_; ++r) {
    out[r] = ReadStatus(StatusFile(dir, r), r, Reap(children[r], 120));
  }
  return out;
}

}  // namespace refit::exec::conformance
