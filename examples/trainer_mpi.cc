// A trainer group and an inference group on the "mpi" method, one process per
// rank: run with `mpirun -np 5 trainer_mpi`. The program splits its own
// communicator out of MPI_COMM_WORLD (world rank 4 stays out, and the group
// numbers the others in reverse), so refit sees only the communicator it is
// handed. Group ranks 0-1 are the trainer (tp=2), ranks 2-3 the inference
// engine (tp=1,ep=2, destination rank offset 2): a non-collocated 2 -> 2
// refit. The trainer checks each refit by refitting the inference weights
// back into a fresh copy of its layout; then an optimizer step changes its
// weights in place and the next refit carries it.
#include <mpi.h>
#include <refit/refit.h>

#include <cstdio>
#include <optional>

#include "example_buffers.h"

namespace {

constexpr int kSide = 2;  // ranks per side

// SwapModelWeights of this rank's models (nullptr where it holds none);
// exits the job on an error.
refit::SwapReport Swap(Buffers* src, Buffers* dst, refit::Communicator& group,
                       int src_offset, int dst_offset) {
  refit::SwapOptions options;
  options.src_rank_offset = src_offset;
  options.dst_rank_offset = dst_offset;
  auto rep = refit::SwapModelWeights(
      src ? &src->model : nullptr, dst ? &dst->model : nullptr, group, options);
  if (!rep.ok()) {
    std::fprintf(stderr, "rank %d: %s\n", group.rank(),
                 rep.status().ToString().c_str());
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  return *rep;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm comm;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank < 2 * kSide ? 0 : MPI_UNDEFINED,
                 2 * kSide - 1 - world_rank, &comm);
  int failures = 0;
  if (comm != MPI_COMM_NULL) {
    auto group = refit::MpiCommunicator({MPI_Comm_c2f(comm)});
    if (!group.ok()) {
      std::fprintf(stderr, "%s\n", group.status().ToString().c_str());
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const int rank = (*group)->rank();
    auto spec = std::make_shared<const refit::ModelSpec>(
        *refit::ModelSpecFromConfigJson(kExampleConfig));
    std::optional<Buffers> trainer, check, inference;
    if (rank < kSide) {
      trainer = Allocate(spec, "tp=2", rank, kSide);
      check = Allocate(spec, "tp=2", rank, kSide);
      Initialise(*trainer);
    } else {
      inference = Allocate(spec, "tp=1,ep=2", rank - kSide, kSide);
    }
    for (int version = 1; version <= 2; ++version) {
      Buffers* t = trainer ? &*trainer : nullptr;
      Buffers* i = inference ? &*inference : nullptr;
      Buffers* c = check ? &*check : nullptr;
      const refit::SwapReport rep = Swap(t, i, **group, 0, kSide);
      Swap(i, c, **group, kSide, 0);  // back, to check
      const bool exact = !trainer || SameBytes(*trainer, *check);
      failures += !exact;
      std::printf(
          "refit %d group rank %d (world rank %d): plan_built %d, sent %llu "
          "B, received %llu B, weight_version %llu%s\n",
          version, rank, world_rank, rep.plan_built,
          static_cast<unsigned long long>(rep.bytes_sent),
          static_cast<unsigned long long>(rep.bytes_received),
          static_cast<unsigned long long>(rep.weight_version),
          trainer ? (exact ? ", bit-exact" : ", WRONG") : "");
      if (trainer) Step(*trainer, 0.01f);
    }
    group->reset();  // before MPI_Finalize
    MPI_Comm_free(&comm);
  }
  int all = 0;
  MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Finalize();
  return all == 0 ? 0 : 1;
}
