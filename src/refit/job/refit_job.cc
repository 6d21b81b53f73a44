#include "refit/job/refit_job.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "refit/checkpoint/rank_file.h"
#include "refit/cuda/device_mirror.h"
#include "refit/exec/dst_tensors.h"
#include "refit/exec/format_transform.h"
#include "refit/exec/session/tensor_binding.h"
#include "refit/exec/shard_arena.h"
#include "refit/local_world.h"
#include "refit/swap.h"
#include "refit/verify/dst_reference.h"

namespace refit::exec {

namespace {

using Clock = std::chrono::steady_clock;

// The checkpoint's mapped tensor bytes, adjacent tensors merged.
std::vector<std::pair<const std::byte*, uint64_t>> MappedSpans(
    const BoundCheckpoint& ckpt) {
  std::vector<std::pair<const std::byte*, uint64_t>> spans, merged;
  for (const auto& srcs : ckpt.sources) {
    for (const io::TensorRef* t : srcs) {
      if (t->info->nbytes > 0) spans.emplace_back(t->data, t->info->nbytes);
    }
  }
  std::sort(spans.begin(), spans.end());
  for (const auto& s : spans) {
    if (!merged.empty() &&
        merged.back().first + merged.back().second == s.first) {
      merged.back().second += s.second;
    } else if (merged.empty() ||
               merged.back().first + merged.back().second < s.first) {
      merged.push_back(s);
    }
  }
  return merged;
}

// One destination of the job: the main one, or one of RefitJobOptions::also.
struct Destination {
  const RefitTopology* topo;
  FormatPlan formats;
  ModelSpec spec;  // DestinationSpec of the formats
};

// A rank's tensors of one destination and their views.
struct DstSide {
  std::optional<DstTensors> dst;
  std::optional<ShardedModel> model;
  std::unique_ptr<cuda::DeviceMirror> dev;  // --device cuda
  std::vector<bool> bad;                    // per destination parameter
};

// One rank of the group: the tensors this job owns for it (the caller's
// tensors, as a trainer and an inference engine hold them) and their views.
struct RankState {
  std::shared_ptr<const ShardArena> src;  // shared by identical replicas
  bool fills_src = false;                 // the first of its replicas
  // Scales of source shards kept as block FP8, shared like `src`.
  std::shared_ptr<const SourceScales> src_scales;
  std::optional<ShardedModel> src_model;
  // --device cuda: device copies of the source, refit in their place.
  std::unique_ptr<cuda::DeviceMirror> src_dev;
  std::vector<DstSide> dsts;  // per destination
  SwapReport last;            // of the last refit
  // RefitJobOptions::dst_check: tensors checked, and most found wrong.
  uint64_t checked = 0, checked_wrong = 0;
};

class Job {
 public:
  Job(const ModelSpec& spec, const BoundCheckpoint& ckpt,
      const RefitTopology& topo, const ReshardPlan& plan,
      const RefitJobOptions& opt)
      : spec_(std::make_shared<const ModelSpec>(spec)),
        formats_(opt.formats != nullptr ? *opt.formats : IdentityFormats(spec)),
        ckpt_(ckpt),
        topo_(topo),
        plan_(plan),
        opt_(opt),
        world_(topo.world_size, LocalWorldOptions{opt.timeout, opt.memory}),
        ranks_(topo.world_size),
        start_(topo.world_size),
        end_(topo.world_size) {
    swap_.src_rank_offset = topo.src_rank_offset;
    swap_.dst_rank_offset = topo.dst_rank_offset;
    if (opt.formats != nullptr) swap_.transform = opt.precision;
    swap_.fanout_gpus_per_node = opt.fanout_gpus_per_node;
    swap_.verify = opt.verify;
    swap_.atomic = opt.atomic;
    dests_.push_back({&topo, formats_, DestinationSpec(spec, formats_)});
    for (const JobDestination& d : opt.also) {
      dests_.push_back({&d.topo, d.formats, DestinationSpec(spec, d.formats)});
    }
  }

  Result<RefitJobReport> Run() {
    ShareSourceArenas();
    REFIT_RETURN_IF_ERROR(Each([&](int r) { return Build(r); }));
    RefitJobReport report;
    REFIT_RETURN_IF_ERROR(TimeOne([&](int r) { return Refit(r); }).status());
    REFIT_RETURN_IF_ERROR(Each([&](int r) { return Verify(r); }));
    if (opt_.baseline) {
      std::vector<double> ms;
      for (int i = 0; i <= opt_.iters; ++i) {
        REFIT_ASSIGN_OR_RETURN(double t,
                               TimeOne([&](int r) { return Memcpy(r); }));
        ms.push_back(t);
      }
      ms.erase(ms.begin());
      report.memcpy_ms_median = Median(ms);
      // The copies wrote over every destination byte, vocabulary padding
      // rows included: zero them again, so that the last check also sees
      // that the timed refits rewrote every byte they own and nothing else
      // (host arenas; a device run's padding keeps the copies' bytes).
      REFIT_RETURN_IF_ERROR(Each([&](int r) { return ZeroDst(r); }));
    }
    std::vector<double> shadow_ms, publish_ms;
    for (int i = 0; i < opt_.iters; ++i) {
      REFIT_ASSIGN_OR_RETURN(double t,
                             TimeOne([&](int r) { return Refit(r); }));
      report.refit_ms.push_back(t);
      shadow_ms.push_back(SlowestRank(&SwapReport::shadow_ms));
      publish_ms.push_back(SlowestRank(&SwapReport::publish_ms));
    }
    report.shadow_ms_median = Median(shadow_ms);
    report.publish_ms_median = Median(publish_ms);
    REFIT_RETURN_IF_ERROR(Each([&](int r) { return Verify(r); }));
    Summarize(report);
    if (report.wrong == 0 && report.checked_wrong == 0 &&
        !opt_.save_dir.empty()) {
      REFIT_RETURN_IF_ERROR(Save(report));
    }
    return report;
  }

 private:
  // f(r) on every rank's thread at once; the lowest failing rank's error.
  Status Each(const std::function<Status(int)>& f) {
    for (Status& st : world_.ForEachRank(f)) REFIT_RETURN_IF_ERROR(st);
    return OkStatus();
  }

  // One step of all ranks: from the first rank starting to the last one
  // finishing, as the ranks themselves record it.
  Result<double> TimeOne(const std::function<Status(int)>& f) {
    REFIT_RETURN_IF_ERROR(Each([&](int r) {
      start_[r] = Clock::now();
      Status st = f(r);
      end_[r] = Clock::now();
      return st;
    }));
    const auto first = *std::min_element(start_.begin(), start_.end());
    const auto last = *std::max_element(end_.begin(), end_.end());
    return std::chrono::duration<double, std::milli>(last - first).count();
  }

  // The largest `field` of the ranks' last refit reports.
  double SlowestRank(double SwapReport::*field) const {
    double most = 0;
    for (const RankState& s : ranks_) most = std::max(most, s.last.*field);
    return most;
  }

  // Source shards of data-parallel replicas are identical (same TP, PP, EP
  // and ETP rank): replicas share one read-only arena, so the job needs the
  // memory of one replica only; the plan still picks senders among them.
  void ShareSourceArenas() {
    std::map<std::array<int, 4>, std::shared_ptr<const ShardArena>> by_coord;
    const Layout& l = topo_.src;
    for (int sr = 0; sr < l.world_size(); ++sr) {
      RankState& s = ranks_[sr + topo_.src_rank_offset];
      const std::array<int, 4> key = {l.TpRank(sr), l.PpRank(sr), l.EpRank(sr),
                                      l.EtpRank(sr)};
      auto [it, inserted] = by_coord.try_emplace(key);
      if (inserted) {
        it->second =
            std::make_shared<ShardArena>(ShardArena::ForRank(*spec_, l, sr));
      }
      s.src = it->second;
      s.fills_src = inserted;
    }
    if (formats_.kept == 0) return;
    std::map<const ShardArena*, std::shared_ptr<const SourceScales>> scales;
    for (RankState& s : ranks_) {
      if (!s.src) continue;
      auto& shared = scales[s.src.get()];
      if (!shared) {
        shared = std::make_shared<const SourceScales>(
            KeptSourceScales(*spec_, formats_, ckpt_, *s.src));
      }
      s.src_scales = shared;
    }
  }

  Status Build(int r) {
    RankState& s = ranks_[r];
    if (s.src) {
      if (s.fills_src) FillArena(*spec_, ckpt_, *s.src);
      const int sr = r - topo_.src_rank_offset;
      s.src_model = ViewsOf(spec_, *spec_, formats_, topo_.src, sr, *s.src,
                            s.src_scales ? &s.src_scales->scales : nullptr,
                            SideBinding::Side::kSource);
    }
    s.dsts.resize(dests_.size());
    for (size_t d = 0; d < dests_.size(); ++d) {
      REFIT_RETURN_IF_ERROR(BuildDst(r, dests_[d], s.dsts[d]));
    }
    if (opt_.memory == MemoryKind::kCuda && s.src_model) {
      REFIT_ASSIGN_OR_RETURN(s.src_dev,
                             cuda::DeviceMirror::Upload(*s.src_model));
    }
    return OkStatus();
  }

  // Rank `r`'s tensors of destination `d`, if it holds any.
  Status BuildDst(int r, const Destination& d, DstSide& side) {
    side.bad.assign(spec_->params.size(), false);
    const Layout& l = d.topo->dst;
    const int dr = r - d.topo->dst_rank_offset;
    if (dr < 0 || dr >= l.world_size()) return OkStatus();
    side.dst = DstTensors::ForRank(d.spec, d.formats, l, dr);
    side.model =
        ViewsOf(spec_, d.spec, d.formats, l, dr, side.dst->data(),
                &side.dst->scale_tensors(), SideBinding::Side::kDestination);
    if (opt_.memory == MemoryKind::kCuda) {
      REFIT_ASSIGN_OR_RETURN(side.dev, cuda::DeviceMirror::Upload(*side.model));
    }
    return OkStatus();
  }

  // The models a refit of rank `s` reads and writes: the device copies with
  // --device cuda.
  const ShardedModel* SrcOf(const RankState& s) const {
    if (s.src_dev) return &s.src_dev->model();
    return s.src_model ? &*s.src_model : nullptr;
  }
  static const ShardedModel* DstOf(const DstSide& d) {
    if (d.dev) return &d.dev->model();
    return d.model ? &*d.model : nullptr;
  }

  // Rank `s`'s tensors of every destination it holds.
  std::vector<DestinationModel> DstModels(const RankState& s) const {
    std::vector<DestinationModel> dsts;
    for (size_t d = 0; d < dests_.size(); ++d) {
      if (const ShardedModel* m = DstOf(s.dsts[d])) {
        dsts.push_back({m, dests_[d].topo->dst_rank_offset});
      }
    }
    return dsts;
  }

  Status Refit(int r) {
    RankState& s = ranks_[r];
    Result<SwapReport> rep =
        dests_.size() == 1
            ? SwapModelWeights(SrcOf(s), DstOf(s.dsts[0]), world_.rank(r),
                               swap_)
            : SwapModelWeights(SrcOf(s), DstModels(s), world_.rank(r), swap_);
    if (!rep.ok()) return rep.status();
    s.last = *rep;
    return OkStatus();
  }

  // Baseline: the same number of bytes into the same destination memory,
  // read from the checkpoint's mapped data.
  Status ZeroDst(int r) {
    const DstSide& d = ranks_[r].dsts[0];
    if (d.dst && !d.dev) {
      std::memset(d.dst->data().raw(), 0, d.dst->data().raw_bytes());
    }
    return OkStatus();
  }

  Status Memcpy(int r) {
    RankState& s = ranks_[r];
    const DstSide& d = s.dsts[0];
    if (!d.dst) return OkStatus();
    if (d.dev) {
      // On the device: this rank's destination bytes from source bytes.
      const RankState& from = s.src_dev ? s : ranks_[topo_.src_rank_offset];
      return from.src_dev ? d.dev->OverwriteFrom(*from.src_dev) : OkStatus();
    }
    // Each rank starts at its own place in the checkpoint so that ranks do
    // not share source cache lines.
    uint64_t total = 0;
    for (const auto& f : ckpt_files_) total += f.second;
    if (total == 0) return OkStatus();
    const ShardArena& dst = d.dst->data();
    uint64_t left = dst.total_bytes(), at = 0;
    uint64_t pos = total / topo_.world_size * r;
    while (left > 0) {
      size_t i = 0;
      uint64_t skip = pos;
      while (skip >= ckpt_files_[i].second) skip -= ckpt_files_[i++].second;
      const uint64_t n = std::min(left, ckpt_files_[i].second - skip);
      std::memcpy(dst.raw() + at, ckpt_files_[i].first + skip, n);
      at += n, left -= n;
      pos = (pos + n) % total;
    }
    return OkStatus();
  }

  Status Verify(int r) {
    RankState& s = ranks_[r];
    for (size_t d = 0; d < dests_.size(); ++d) {
      DstSide& side = s.dsts[d];
      if (side.dev) REFIT_RETURN_IF_ERROR(side.dev->Download(*side.model));
      if (!side.dst) continue;
      MarkWrongDstShards(*spec_, dests_[d].formats, ckpt_, *side.dst, side.bad);
    }
    return opt_.dst_check && s.dsts[0].dst ? CheckByName(r) : OkStatus();
  }

  // RefitJobOptions::dst_check of destination rank `r` (global).
  Status CheckByName(int r) {
    RankState& s = ranks_[r];
    const int dr = r - topo_.dst_rank_offset;
    const std::vector<SideBinding::TensorBytes> tensors = NamedDstTensors(
        dests_[0].spec, formats_, *s.dsts[0].dst, topo_.dst, dr);
    REFIT_ASSIGN_OR_RETURN(const uint64_t wrong, opt_.dst_check(dr, tensors));
    s.checked = tensors.size();
    s.checked_wrong = std::max(s.checked_wrong, wrong);
    return OkStatus();
  }

  void Summarize(RefitJobReport& rep) const {
    rep.wrong_per_destination.assign(dests_.size(), 0);
    uint64_t written = 0;
    for (const RankState& s : ranks_) {
      for (size_t d = 0; d < dests_.size(); ++d) {
        rep.wrong_per_destination[d] +=
            std::count(s.dsts[d].bad.begin(), s.dsts[d].bad.end(), true);
      }
      written +=
          s.last.bytes_received + s.last.bytes_local + s.last.bytes_copied;
      rep.bytes_copied += s.last.bytes_copied;
      rep.checked_tensors += s.checked;
      rep.checked_wrong += s.checked_wrong;
      rep.transform_staging_bytes =
          std::max(rep.transform_staging_bytes, s.last.staging_bytes);
      rep.shadow_bytes += s.last.shadow_bytes;
    }
    for (uint64_t w : rep.wrong_per_destination) rep.wrong += w;
    rep.dst_bytes =
        dests_.size() == 1 ? plan_.bytes_remote + plan_.bytes_local : written;
    SummarizeRefitTimes(rep.dst_bytes, rep);
    if (opt_.baseline) {
      uint64_t arena = 0;
      for (const RankState& s : ranks_) {
        arena += s.dsts[0].dst ? s.dsts[0].dst->data().total_bytes() : 0;
      }
      rep.memcpy_gbps = arena / (rep.memcpy_ms_median * 1e6);
    }
  }

  Status Save(RefitJobReport& rep) const;

 public:
  // Mapped checkpoint bytes the memcpy baseline reads.
  std::vector<std::pair<const std::byte*, uint64_t>> ckpt_files_;

 private:
  const std::shared_ptr<const ModelSpec> spec_;
  const FormatPlan formats_;
  const BoundCheckpoint& ckpt_;
  const RefitTopology& topo_;
  const ReshardPlan& plan_;
  const RefitJobOptions& opt_;
  SwapOptions swap_;
  std::vector<Destination> dests_;  // the main one first
  LocalWorld world_;
  std::vector<RankState> ranks_;
  std::vector<Clock::time_point> start_, end_;
};

Status Job::Save(RefitJobReport& rep) const {
  const Layout& dst = topo_.dst;
  for (int dr = 0; dr < dst.world_size(); ++dr) {
    const int g = dr + topo_.dst_rank_offset;
    REFIT_ASSIGN_OR_RETURN(
        std::string path,
        SaveRankFile(opt_.save_dir, g, dests_[0].spec, formats_,
                     *ranks_[g].dsts[0].dst, dst, dr));
    rep.saved_files.push_back(std::move(path));
  }
  return OkStatus();
}

}  // namespace

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values.empty() ? 0 : values[values.size() / 2];
}

void SummarizeRefitTimes(uint64_t bytes, RefitJobReport& report) {
  const std::vector<double>& ms = report.refit_ms;
  report.refit_ms_min =
      ms.empty() ? 0 : *std::min_element(ms.begin(), ms.end());
  report.refit_ms_median = Median(ms);
  report.gbps = bytes / (report.refit_ms_median * 1e6);
}

Result<RefitJobReport> RunEmbeddedRefit(const ModelSpec& spec,
                                        const BoundCheckpoint& ckpt,
                                        const RefitTopology& topo,
                                        const ReshardPlan& plan,
                                        const RefitJobOptions& options) {
  if (options.iters < 1) return InvalidArgument("--iters must be >= 1");
  Job job(spec, ckpt, topo, plan, options);
  job.ckpt_files_ = MappedSpans(ckpt);
  return job.Run();
}

}  // namespace refit::exec
