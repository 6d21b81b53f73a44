#include "refit/job/mpi/mpi_refit_job.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <optional>

#include "refit/checkpoint/rank_file.h"
#include "refit/core/plan_cache.h"
#include "refit/exec/dst_tensors.h"
#include "refit/exec/format_transform.h"
#include "refit/exec/session/tensor_binding.h"
#include "refit/exec/shard_arena.h"
#include "refit/mpi_communicator.h"
#include "refit/swap.h"
#include "refit/verify/dst_reference.h"

namespace refit::exec {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kOk = "ok ";
constexpr std::string_view kError = "error ";

std::string EncodeError(const Status& st) {
  return std::string(kError) + std::to_string(static_cast<int>(st.code())) +
         " " + st.message();
}

Status DecodeError(int rank, std::string_view record) {
  record.remove_prefix(kError.size());
  const size_t space = record.find(' ');
  const auto code = static_cast<StatusCode>(
      std::atoi(std::string(record.substr(0, space)).c_str()));
  return Status(code, "rank " + std::to_string(rank) + ": " +
                          std::string(record.substr(space + 1)));
}

// "[offset, offset + size)".
std::string RankRange(int offset, int size) {
  std::string range = "[";
  range.append(std::to_string(offset)).append(", ");
  return range.append(std::to_string(offset + size)).append(")");
}

// What the destination looks like: its formats and spec (dtypes after
// conversion).
struct Destination {
  FormatPlan formats;
  ModelSpec spec;
};

// This rank's tensors (owned here, as a trainer and an inference engine own
// theirs), their views, and the group it refits them in.
struct RankState {
  std::unique_ptr<ShardArena> src;
  // Scales of the source shards kept as block FP8 (formats.kept > 0).
  std::unique_ptr<SourceScales> src_scales;
  std::unique_ptr<DstTensors> dst;
  int dst_rank = -1;  // in the destination layout
  std::optional<ShardedModel> src_model, dst_model;
  std::unique_ptr<Communicator> group;
  SwapOptions swap;
  uint64_t transform_staging = 0;  // after the last refit
  RankPlan plan;                   // for the baseline's byte matrix
  std::vector<bool> wrong;         // per destination parameter
};

// The layout rank of global rank `rank` on one side, or -1 if it has none.
int SideRank(int rank, int offset, const Layout& layout) {
  const int r = rank - offset;
  return r >= 0 && r < layout.world_size() ? r : -1;
}

MpiOptions GroupOptions(const MpiCopyOptions& copy) {
  MpiOptions o;
  o.timeout = copy.timeout;
  o.max_staging_bytes = copy.schedule.max_staging_bytes;
  o.max_inflight = copy.schedule.max_inflight;
  o.max_inflight_direct = copy.max_inflight_direct;
  return o;
}

Result<RankState> BuildRank(const MpiWorld& world,
                            std::shared_ptr<const ModelSpec> spec,
                            const Destination& dest,
                            const BoundCheckpoint& ckpt,
                            const RefitTopology& topo, const ReshardPlan& plan,
                            const MpiRefitOptions& options) {
  const int rank = world.rank();
  RankState s;
  s.wrong.assign(spec->params.size(), false);
  if (int sr = SideRank(rank, topo.src_rank_offset, topo.src); sr >= 0) {
    s.src =
        std::make_unique<ShardArena>(ShardArena::ForRank(*spec, topo.src, sr));
    FillArena(*spec, ckpt, *s.src);
    if (dest.formats.kept > 0) {
      s.src_scales = std::make_unique<SourceScales>(
          KeptSourceScales(*spec, dest.formats, ckpt, *s.src));
    }
    s.src_model = ViewsOf(spec, *spec, dest.formats, topo.src, sr, *s.src,
                          s.src_scales ? &s.src_scales->scales : nullptr,
                          SideBinding::Side::kSource);
  }
  s.dst_rank = SideRank(rank, topo.dst_rank_offset, topo.dst);
  if (s.dst_rank >= 0) {
    s.dst = std::make_unique<DstTensors>(
        DstTensors::ForRank(dest.spec, dest.formats, topo.dst, s.dst_rank));
    s.dst_model = ViewsOf(spec, dest.spec, dest.formats, topo.dst, s.dst_rank,
                          s.dst->data(), &s.dst->scale_tensors(),
                          SideBinding::Side::kDestination);
  }
  s.swap.src_rank_offset = topo.src_rank_offset;
  s.swap.dst_rank_offset = topo.dst_rank_offset;
  if (options.formats != nullptr) s.swap.transform = options.precision;
  s.swap.fanout_gpus_per_node = options.fanout_gpus_per_node;
  s.swap.verify = options.verify;
  s.swap.atomic = options.atomic;
  s.plan = ExtractRankPlan(plan, rank);
  REFIT_ASSIGN_OR_RETURN(
      s.group, MpiCommunicator(world.comm(), GroupOptions(options.copy)));
  return s;
}

// `run()` after a barrier; returns this rank's time in ms. `step` names the
// call in errors.
template <typename Run>
Result<double> Timed(MpiWorld& world, const std::string& step, Run&& run) {
  Status st = world.Barrier("at the barrier");
  const auto start = Clock::now();
  if (st.ok()) st = run();
  if (!st.ok()) return Status(st.code(), step + ": " + st.message());
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

// One refit after a barrier, through SwapModelWeights as a trainer would;
// returns this rank's time in ms.
Result<double> TimedRefit(MpiWorld& world, RankState& s,
                          const std::string& step) {
  return Timed(world, step, [&]() -> Status {
    Result<SwapReport> rep = SwapModelWeights(
        s.src_model ? &*s.src_model : nullptr,
        s.dst_model ? &*s.dst_model : nullptr, *s.group, s.swap);
    if (rep.ok()) s.transform_staging = rep->staging_bytes;
    return rep.status();
  });
}

// The baseline: one warm-up and `iters` timed MPI_Alltoallv, each after a
// barrier, of the bytes this rank's ops move to and from each rank, itself
// included (its local copies); returns this rank's times in ms.
Result<std::vector<double>> TimeAllToAllV(MpiWorld& world,
                                          const ReshardPlan& plan,
                                          const RankPlan& rank_plan,
                                          int iters) {
  std::vector<uint64_t> send_counts(world.size(), 0);
  std::vector<uint64_t> recv_counts(world.size(), 0);
  for (uint32_t i : rank_plan.sends) {
    send_counts[plan.ops[i].dst_rank] += plan.ops[i].bytes;
  }
  for (uint32_t i : rank_plan.recvs) {
    recv_counts[plan.ops[i].src_rank] += plan.ops[i].bytes;
  }
  // The diagonal: the refit's local copies are in the same byte matrix.
  for (uint32_t i : rank_plan.local_copies) {
    send_counts[rank_plan.rank] += plan.ops[i].bytes;
    recv_counts[rank_plan.rank] += plan.ops[i].bytes;
  }
  // Every pair's count is some rank's send count: the largest is agreed on.
  std::array<double, 1> max_count = {static_cast<double>(
      *std::max_element(send_counts.begin(), send_counts.end()))};
  REFIT_RETURN_IF_ERROR(
      world.AllReduceMax(max_count, "agreeing on the MPI_Alltoallv rounds"));
  std::vector<std::byte> send(
      std::accumulate(send_counts.begin(), send_counts.end(), uint64_t{0}));
  std::vector<std::byte> recv(
      std::accumulate(recv_counts.begin(), recv_counts.end(), uint64_t{0}));
  std::vector<double> times;
  for (int i = 0; i <= iters; ++i) {
    const std::string step = i == 0
                                 ? "the warm-up MPI_Alltoallv"
                                 : "timed MPI_Alltoallv " + std::to_string(i) +
                                       " of " + std::to_string(iters);
    REFIT_ASSIGN_OR_RETURN(double ms, Timed(world, step, [&] {
                             return world.AllToAllV(
                                 send, send_counts, recv, recv_counts,
                                 static_cast<uint64_t>(max_count[0]), step);
                           }));
    if (i > 0) times.push_back(ms);
  }
  return times;
}

// Sums the plan's totals (wire bytes of this rank's sends under `formats`),
// and takes the slowest rank's times (refits, `alltoallv_ms` of the baseline,
// planning) and the largest transform staging, over all ranks. The wrong
// shards are already summed (report.job.wrong).
Status Reduce(MpiWorld& world, const ModelSpec& spec, const FormatPlan& formats,
              const ReshardPlan& plan, const RankState& s, double plan_ms,
              const std::vector<double>& alltoallv_ms, MpiRefitReport& report) {
  // remote, local, messages, wire, forwarded
  std::array<uint64_t, 5> sums = {0, 0, 0, 0, 0};
  for (uint32_t i : s.plan.sends) {
    const TransferOp& op = plan.ops[i];
    sums[0] += op.bytes;
    for (const Piece& piece : op.pieces) {
      sums[3] += WireBytes(spec.params[piece.dst_param],
                           formats.params[piece.dst_param], piece);
    }
  }
  for (uint32_t i : s.plan.local_copies) sums[1] += plan.ops[i].bytes;
  sums[2] = s.plan.sends.size();
  for (uint32_t i : s.plan.forward_sends) sums[4] += plan.forwards[i].bytes;
  REFIT_RETURN_IF_ERROR(world.AllReduceSum(sums, "summing the results"));
  const size_t refits = report.job.refit_ms.size();
  std::vector<double> times = report.job.refit_ms;
  times.insert(times.end(), alltoallv_ms.begin(), alltoallv_ms.end());
  times.push_back(static_cast<double>(s.transform_staging));
  times.push_back(plan_ms);
  REFIT_RETURN_IF_ERROR(world.AllReduceMax(times, "collecting the times"));
  report.bytes_remote = sums[0];
  report.bytes_local = sums[1];
  report.messages = sums[2];
  report.bytes_wire = sums[3];
  report.bytes_forwarded = sums[4];
  report.plan_ms = times.back();
  report.job.transform_staging_bytes =
      static_cast<uint64_t>(times[times.size() - 2]);
  report.job.refit_ms.assign(times.begin(), times.begin() + refits);
  report.alltoallv_ms_median =
      Median(std::vector<double>(times.begin() + refits, times.end() - 2));
  SummarizeRefitTimes(sums[0] + sums[1], report.job);
  return OkStatus();
}

// Every destination rank writes its file; the ranks then share the paths or
// errors in one all-gather: report.job.saved_files in rank order, and
// report.save the lowest failing rank's error.
Status Save(MpiWorld& world, const Destination& dest, const RefitTopology& topo,
            const std::string& dir, const RankState& s,
            MpiRefitReport& report) {
  std::string record;  // empty: no destination tensors on this rank
  if (s.dst) {
    Result<std::string> path =
        SaveRankFile(dir, world.rank(), dest.spec, dest.formats, *s.dst,
                     topo.dst, s.dst_rank);
    record = path.ok() ? std::string(kOk) + *path : EncodeError(path.status());
  }
  REFIT_ASSIGN_OR_RETURN(std::vector<std::string> all,
                         world.AllGather(record, "sharing the saved files"));
  for (int r = 0; r < world.size(); ++r) {
    if (all[r].starts_with(kError)) {
      if (report.save.ok()) report.save = DecodeError(r, all[r]);
    } else if (all[r].starts_with(kOk)) {
      report.job.saved_files.push_back(all[r].substr(kOk.size()));
    }
  }
  return OkStatus();
}

}  // namespace

std::string InputsRecord(const ModelSpec& spec, const RefitTopology& topo) {
  char fingerprint[24];
  std::snprintf(fingerprint, sizeof(fingerprint), "%016llx",
                static_cast<unsigned long long>(SpecFingerprint(spec)));
  return std::string("model ") + fingerprint + ", src " +
         topo.src.config().ToString() + " on ranks " +
         RankRange(topo.src_rank_offset, topo.src.world_size()) + ", dst " +
         topo.dst.config().ToString() + " on ranks " +
         RankRange(topo.dst_rank_offset, topo.dst.world_size()) + ", world " +
         std::to_string(topo.world_size);
}

Status AgreeOnInputs(MpiWorld& world, const Result<std::string>& mine) {
  const std::string record =
      mine.ok() ? std::string(kOk) + *mine : EncodeError(mine.status());
  REFIT_ASSIGN_OR_RETURN(std::vector<std::string> all,
                         world.AllGather(record, "exchanging inputs"));
  for (int r = 0; r < world.size(); ++r) {
    if (all[r].starts_with(kError)) return DecodeError(r, all[r]);
  }
  for (int r = 1; r < world.size(); ++r) {
    if (all[r] != all[0]) {
      return FailedPrecondition(
          "rank " + std::to_string(r) + "'s inputs differ from rank 0's: " +
          all[r].substr(kOk.size()) + " vs " + all[0].substr(kOk.size()));
    }
  }
  return OkStatus();
}

Result<MpiRefitReport> RunMpiRefit(MpiWorld& world, const ModelSpec& spec,
                                   const BoundCheckpoint& ckpt,
                                   const RefitTopology& topo,
                                   const ReshardPlan& plan, double plan_ms,
                                   const MpiRefitOptions& options) {
  if (options.iters < 1) return InvalidArgument("--iters must be >= 1");
  Destination dest;
  dest.formats =
      options.formats != nullptr ? *options.formats : IdentityFormats(spec);
  dest.spec = DestinationSpec(spec, dest.formats);
  auto shared_spec = std::make_shared<const ModelSpec>(spec);
  REFIT_ASSIGN_OR_RETURN(RankState s, BuildRank(world, shared_spec, dest, ckpt,
                                                topo, plan, options));
  uint64_t checked = 0, checked_wrong = 0;  // options.dst_check
  auto check = [&]() -> Status {
    if (!s.dst) return OkStatus();
    MarkWrongDstShards(spec, dest.formats, ckpt, *s.dst, s.wrong);
    if (!options.dst_check) return OkStatus();
    const std::vector<SideBinding::TensorBytes> tensors =
        NamedDstTensors(dest.spec, dest.formats, *s.dst, topo.dst, s.dst_rank);
    REFIT_ASSIGN_OR_RETURN(const uint64_t wrong,
                           options.dst_check(s.dst_rank, tensors));
    checked = tensors.size();
    checked_wrong = std::max(checked_wrong, wrong);
    return OkStatus();
  };
  MpiRefitReport report;
  REFIT_RETURN_IF_ERROR(TimedRefit(world, s, "the warm-up refit").status());
  REFIT_RETURN_IF_ERROR(check());
  for (int i = 1; i <= options.iters; ++i) {
    const std::string step = "timed refit " + std::to_string(i) + " of " +
                             std::to_string(options.iters);
    REFIT_ASSIGN_OR_RETURN(double ms, TimedRefit(world, s, step));
    report.job.refit_ms.push_back(ms);
  }
  REFIT_RETURN_IF_ERROR(check());
  std::array<uint64_t, 3> wrong = {
      static_cast<uint64_t>(std::count(s.wrong.begin(), s.wrong.end(), true)),
      checked, checked_wrong};
  REFIT_RETURN_IF_ERROR(world.AllReduceSum(wrong, "summing the wrong shards"));
  report.job.wrong = wrong[0];
  report.job.checked_tensors = wrong[1];
  report.job.checked_wrong = wrong[2];
  if (report.job.wrong == 0 && report.job.checked_wrong == 0 &&
      !options.save_dir.empty()) {
    REFIT_RETURN_IF_ERROR(Save(world, dest, topo, options.save_dir, s, report));
  }
  std::vector<double> alltoallv_ms;
  if (options.baseline) {
    // The shards are checked: free them first, so that the baseline's
    // buffers do not add to their memory.
    s.src_model.reset();
    s.dst_model.reset();
    s.src_scales.reset();
    s.src.reset();
    s.dst.reset();
    REFIT_ASSIGN_OR_RETURN(alltoallv_ms,
                           TimeAllToAllV(world, plan, s.plan, options.iters));
  }
  REFIT_RETURN_IF_ERROR(Reduce(world, spec, dest.formats, plan, s, plan_ms,
                               alltoallv_ms, report));
  s.group.reset();  // closes its copy service
  return report;
}

}  // namespace refit::exec
