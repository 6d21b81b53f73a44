// `refit run` under mpirun: one rank per process (built when MPI is found).
#ifndef REFIT_CLI_RUN_MPI_H_
#define REFIT_CLI_RUN_MPI_H_

#include "refit/cli/run_setup.h"
#include "refit/core/status.h"

namespace refit::exec {
class MpiWorld;
}  // namespace refit::exec

namespace refit::cli {

/// True when an MPI launcher started this process as one of several.
bool LaunchedAsMpiRanks();

/// Runs this process's rank of `refit run`. Every rank checks its inputs and
/// all ranks agree on them first, so bad input on any rank makes every rank
/// print that rank's error ("refit: rank R: ...") and return 2. Destination
/// formats (--dst-dtype, --cast, ...) convert as in the embedded run. Rank 0
/// writes --dump-plan (the whole plan, before the refit: an error writing it
/// is bad input), prints the table and writes --json. With --save every
/// destination rank writes its own file when no rank found a wrong shard;
/// rank 0 prints them all ("# saved PATH"), or the lowest failing rank's
/// error (then every rank returns 2). Returns the exit status on every rank: 0
/// bit-exact, 1 some destination shard wrong, 2 error. A failure after the
/// refit started (a peer that stops answering within --timeout) prints one
/// line and ends the whole job with exit status 2 (MPI_Abort).
int RunMpiRun(const RunOptions& o);

/// Prints `st` as "refit: ..." and ends every process of the job with exit
/// status 2 (MPI_Abort): for failures that may leave peers waiting.
[[noreturn]] void AbortMpiJob(exec::MpiWorld& world, const Status& st);

/// Ends this rank after exec::AgreeOnInputs returned `agreed` (not ok): prints
/// it, waits at a barrier so that every rank prints its line before mpirun
/// stops the others, and returns 2. Aborts the job instead when the world is
/// broken (a collective failed).
int EndWithInputError(exec::MpiWorld& world, const Status& agreed);

}  // namespace refit::cli

#endif  // REFIT_CLI_RUN_MPI_H_
