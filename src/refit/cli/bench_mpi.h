// `refit bench --transport mpi` under mpirun: each scenario's reduced-size
// refit over the MPI copy service, one rank per process, timed against
// MPI_Alltoallv of the same per-pair bytes (built when MPI is found).
#ifndef REFIT_CLI_BENCH_MPI_H_
#define REFIT_CLI_BENCH_MPI_H_

#include <chrono>
#include <string>
#include <vector>

#include "refit/bench/bench_runner.h"
#include "refit/bench/scenario.h"

namespace refit::cli {

/// Runs this process's rank of every scenario at 1/options.scale width.
/// For each scenario rank 0 plans it at full size (the columns of
/// `refit bench`); the lowest rank of each host writes the scaled synthetic
/// checkpoint (as RunScenario does) under options.work_dir; every rank
/// builds only its own shards from it and its own plan, then runs
/// RunMpiRefit with the MPI_Alltoallv baseline (one warm-up and
/// options.iters timed each), checking its destination shards. Rank 0
/// prints the table (refit ms, Alltoallv ms and refit/Alltoallv, all
/// medians of the slowest rank) and writes `json_path` when set. Every
/// scenario's world must equal the number of processes. `timeout`: how long
/// a rank waits for a peer. Returns the exit status on every rank: 0
/// bit-exact, 1 a destination shard wrong, 2 bad input (every rank prints
/// "refit: rank R: ..." with the failing rank's error). A failure once the
/// refits started prints one line and ends the job with exit status 2
/// (MPI_Abort).
int RunMpiBench(const std::vector<bench::Scenario>& scenarios,
                const bench::BenchOptions& options,
                const std::string& json_path,
                std::chrono::milliseconds timeout);

}  // namespace refit::cli

#endif  // REFIT_CLI_BENCH_MPI_H_
