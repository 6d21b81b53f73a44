// A trainer-like program on the "local" method: four ranks, each a thread of
// this process, keep their weights in their own buffers (a Megatron layout,
// tp=2,ep=2) and refit them into buffers they own for the inference side
// (tp=1,ep=4). Then an optimizer step changes the weights in place and the
// next refit carries it. Each result is checked by refitting the inference
// buffers back into the trainer layout and comparing bytes.
#include <refit/refit.h>

#include <cstdio>
#include <vector>

#include "example_buffers.h"

namespace {
constexpr int kWorld = 4;
}  // namespace

int main() {
  auto parsed = refit::ModelSpecFromConfigJson(kExampleConfig);
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s\n", parsed.status().ToString().c_str());
    return 2;
  }
  auto spec = std::make_shared<const refit::ModelSpec>(*parsed);
  std::vector<Buffers> trainer, inference, check;
  for (int r = 0; r < kWorld; ++r) {
    trainer.push_back(Allocate(spec, "tp=2,ep=2", r, kWorld));
    inference.push_back(Allocate(spec, "tp=1,ep=4", r, kWorld));
    check.push_back(Allocate(spec, "tp=2,ep=2", r, kWorld));
    Initialise(trainer[r]);
  }
  refit::LocalWorld world(kWorld);
  int failures = 0;
  for (int version = 1; version <= 2; ++version) {
    std::vector<refit::SwapReport> reports(kWorld);
    auto statuses = world.ForEachRank([&](int r) -> refit::Status {
      refit::Communicator& group = world.rank(r);
      // Trainer -> inference: the refit.
      auto rep = refit::SwapModelWeights(&trainer[r].model, &inference[r].model,
                                         group);
      if (!rep.ok()) return rep.status();
      reports[r] = *rep;
      // Inference -> a fresh trainer-layout copy: the check.
      return refit::SwapModelWeights(&inference[r].model, &check[r].model,
                                     group)
          .status();
    });
    for (int r = 0; r < kWorld; ++r) {
      if (!statuses[r].ok()) {
        std::fprintf(stderr, "rank %d: %s\n", r,
                     statuses[r].ToString().c_str());
        return 2;
      }
      const bool exact = SameBytes(trainer[r], check[r]);
      failures += !exact;
      std::printf(
          "refit %d rank %d: plan_built %d, sent %llu B, received %llu B, "
          "local %llu B, weight_version %llu, %s\n",
          version, r, reports[r].plan_built,
          static_cast<unsigned long long>(reports[r].bytes_sent),
          static_cast<unsigned long long>(reports[r].bytes_received),
          static_cast<unsigned long long>(reports[r].bytes_local),
          static_cast<unsigned long long>(reports[r].weight_version),
          exact ? "bit-exact" : "WRONG");
    }
    for (Buffers& b : trainer) Step(b, 0.01f);
  }
  return failures == 0 ? 0 : 1;
}
