// GoogleTest under mpirun, one process per rank: rank 0 prints GoogleTest's
// usual output; every other rank prints only its failures, one line each
// ("rank R: FILE:LINE: SUMMARY"), so a run's log stays readable. Header-only:
// for the MPI test programs, which link GoogleTest themselves.
#ifndef REFIT_TRANSPORT_MPI_MPI_GTEST_H_
#define REFIT_TRANSPORT_MPI_MPI_GTEST_H_

#include <gtest/gtest.h>

#include <cstdio>

namespace refit::exec {

/// Prints the failures of rank `rank`, one line each, on stderr.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "rank %d: %s:%d: %s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(),
                 r.summary());
  }

 private:
  int rank_;
};

/// On ranks other than 0, replaces GoogleTest's printer by a
/// RankFailurePrinter. Call after InitGoogleTest, before RUN_ALL_TESTS.
inline void PrintFullOutputOnRankZero(int rank) {
  if (rank == 0) return;
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  delete listeners.Release(listeners.default_result_printer());
  listeners.Append(new RankFailurePrinter(rank));
}

}  // namespace refit::exec

#endif  // REFIT_TRANSPORT_MPI_MPI_GTEST_H_
