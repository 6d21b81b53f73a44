// The session API (include/refit/swap.h): caches of plans, rank sessions and
// copy services, and the per-call steps every rank runs alike.
#include "refit/swap.h"

#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>

#include "refit/exec/checksum_copy_service.h"
#include "refit/exec/copy_service.h"
#include "refit/exec/session/agreement.h"
#include "refit/exec/session/caches.h"
#include "refit/exec/session/rank_session.h"
#include "refit/exec/session/rank_sessions.h"
#include "refit/exec/session/session_inputs.h"
#include "refit/exec/session/shadow_copy.h"

namespace refit {

/// Updates what a Communicator publishes (its weight version, the tensors a
/// failed refit may have left partial).
class SessionAccess {
 public:
  static uint64_t BumpWeightVersion(Communicator& group) {
    return ++group.weight_version_;
  }
  static void SetPartialTensors(Communicator& group,
                                std::vector<std::string> names) {
    group.partial_tensors_ = std::move(names);
  }
};

namespace {

using Clock = std::chrono::steady_clock;
using exec::CopyService;
using exec::RankSessions;
using exec::SessionPlan;
using Dsts = std::span<const DestinationModel>;
using exec::ShadowCopy;

// The destination model of a rank that binds at most one, else nullptr.
const ShardedModel* OnlyDst(Dsts dsts) {
  return dsts.size() == 1 ? dsts[0].model : nullptr;
}

// SwapOptions::atomic and dst_digests keep one shadow and one name space
// per rank: at most one destination model. Errors: kInvalidArgument naming
// the rank.
Status CheckOneDestination(Dsts dsts, const SwapOptions& options, int rank) {
  if (dsts.size() <= 1 || !(options.atomic || options.dst_digests)) {
    return OkStatus();
  }
  return InvalidArgument(
      "rank " + std::to_string(rank) + " binds " + std::to_string(dsts.size()) +
      " destination models: SwapOptions::" +
      (options.atomic ? "atomic" : "dst_digests") + " takes one per rank");
}

// SwapOptions::dst_digests needs host memory. Errors: kInvalidArgument
// naming the rank and the first CUDA tensor of `dst`.
Status CheckDigestable(const ShardedModel* dst, const SwapOptions& options,
                       int rank) {
  if (!options.dst_digests || dst == nullptr) return OkStatus();
  for (const auto& [name, view] : dst->tensors) {
    if (view.memory != MemoryKind::kHost) {
      return InvalidArgument("rank " + std::to_string(rank) +
                             ": destination tensor " + name +
                             ": dst_digests needs host memory, not " +
                             std::string(MemoryKindName(view.memory)));
    }
  }
  return OkStatus();
}

// XXH3-64 of every tensor of `dst`, in name order.
std::vector<TensorDigest> Digests(const ShardedModel& dst) {
  std::vector<TensorDigest> out;
  out.reserve(dst.tensors.size());
  for (const auto& [name, view] : dst.tensors) {
    out.push_back({name, XXH3_64bits(view.data, view.nbytes())});
  }
  std::sort(out.begin(), out.end(),
            [](const TensorDigest& a, const TensorDigest& b) {
              return a.name < b.name;
            });
  return out;
}

// `failed`, which came after this rank's refit may have written `written`
// (empty: none of the caller's bytes, e.g. with SwapOptions::atomic):
// records the tensors on `group` (Communicator::partial_tensors) and names
// them at the end of the message.
Status WithPartialTensors(const Status& failed, Communicator& group,
                          Dsts written) {
  std::vector<std::string> names;
  for (const DestinationModel& d : written) {
    for (const auto& [name, view] : d.model->tensors) names.push_back(name);
  }
  if (names.empty()) return failed;
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  constexpr size_t kNamed = 3;
  std::string listed;
  for (size_t i = 0; i < names.size() && i < kNamed; ++i) {
    listed += (i > 0 ? ", " : "") + names[i];
  }
  if (names.size() > kNamed) {
    listed += " and " + std::to_string(names.size() - kNamed) + " more";
  }
  const std::string clause =
      "; rank " + std::to_string(group.rank()) + ": " +
      std::to_string(names.size()) + " destination tensor" +
      (names.size() == 1 ? " may" : "s may") + " hold partial bytes (" +
      listed + "; Communicator::partial_tensors)";
  SessionAccess::SetPartialTensors(group, std::move(names));
  return Status(failed.code(), failed.message() + clause);
}

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

// The plans of one refit, one per destination, with the DestinationKey of
// each.
struct PlanSet {
  std::vector<std::shared_ptr<const SessionPlan>> plans;
  std::vector<std::string> keys;
  uint64_t shape = 0;  // exec::PlacementFreeFingerprint of the records
};

// Process-wide caches, as Megatron's module-level _plan_cache and
// _service_cache (refit.py).
struct Caches {
  std::mutex mu;
  // Plans shared by the ranks of this process: (records, rank or -1).
  std::map<std::pair<uint64_t, int>, std::shared_ptr<const PlanSet>> plans;
  // (communicator, records) -> this rank's sessions (nullptr for a rank
  // that holds no side) and the records' placement-free fingerprint.
  std::map<std::pair<uint64_t, uint64_t>,
           std::pair<std::shared_ptr<RankSessions>, uint64_t>>
      sessions;
  std::map<uint64_t, std::unique_ptr<CopyService>> services;
  // communicator -> the shadow copy of its last atomic call (SwapOptions::
  // atomic), whose memory the next call reuses.
  std::map<uint64_t, std::unique_ptr<exec::ShadowCopy>> shadows;
};

Caches& Global() {
  static Caches* caches = new Caches;
  return *caches;
}

// This rank's shadow copy for one call: the last call's, taken from the
// cache to be recycled, and on every return the call's own (or else the last
// one) put back.
class KeptShadow {
 public:
  KeptShadow(uint64_t group, bool atomic) : group_(group) {
    if (!atomic) return;
    Caches& c = Global();
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.shadows.find(group_);
    if (it == c.shadows.end()) return;
    previous_ = std::move(it->second);
    c.shadows.erase(it);
  }
  ~KeptShadow() {
    if (current) previous_ = std::make_unique<ShadowCopy>(*std::move(current));
    if (!previous_) return;
    Caches& c = Global();
    std::lock_guard<std::mutex> lock(c.mu);
    c.shadows[group_] = std::move(previous_);
  }
  KeptShadow(const KeptShadow&) = delete;
  KeptShadow& operator=(const KeptShadow&) = delete;

  ShadowCopy* previous() const { return previous_.get(); }
  std::optional<ShadowCopy> current;  // this call's

 private:
  uint64_t group_;
  std::unique_ptr<ShadowCopy> previous_;
};

// The spec this rank brings (every model has the same, checked).
std::shared_ptr<const ModelSpec> SpecOf(const ShardedModel* src, Dsts dsts) {
  if (src != nullptr) return src->spec;
  return dsts.empty() ? nullptr : dsts[0].model->spec;
}

// Task ids of destination d's plan start at d * TaskSpan: its ops use
// [0, world^2), its forwards [world^2, 2 world^2) (planner.h).
uint64_t TaskSpan(int world) {
  return 2 * static_cast<uint64_t>(world) * static_cast<uint64_t>(world);
}

void OffsetTasks(ReshardPlan& plan, uint64_t offset) {
  for (auto* ops : {&plan.ops, &plan.forwards}) {
    for (TransferOp& op : *ops) op.task_id += offset;
  }
}

// The plan of destination `d` of `agreed`; the shards it shares with an
// earlier destination on a rank are left to SessionPlan::copied (without
// fan-out).
// The plan of `topo` from the cached plan of a topology that differs from
// it only in the destination's expert placement (RebuildReshardPlan), or
// nullopt where a rebuild does not apply. `*replanned`: the parameters it
// planned again.
std::optional<Result<ReshardPlan>> Rebuild(const ModelSpec& spec,
                                           const SessionPlan* previous,
                                           const RefitTopology& topo,
                                           const PlanOptions& plan_options,
                                           const Communicator& group,
                                           uint64_t* replanned) {
  if (previous == nullptr || !plan_options.skip_dst.empty() ||
      plan_options.fanout_gpus_per_node != 0 ||
      previous->plan->send_load.size() != static_cast<size_t>(group.size())) {
    return std::nullopt;
  }
  RebuildStats stats;
  Result<ReshardPlan> plan =
      RebuildReshardPlan(spec, topo, group.shares_process() ? -1 : group.rank(),
                         previous->topo, *previous->plan, plan_options, &stats);
  if (plan.status().code() == StatusCode::kInvalidArgument) {
    return std::nullopt;  // not only the placement changed
  }
  *replanned = stats.params_replanned;
  return plan;
}

Result<std::shared_ptr<const SessionPlan>> BuildDestinationPlan(
    std::shared_ptr<const ModelSpec> spec, size_t d,
    std::vector<RefitTopology>& topos, std::vector<FormatPlan>& formats,
    const SwapOptions& options, const Communicator& group,
    const SessionPlan* previous) {
  auto p = std::make_shared<SessionPlan>(
      SessionPlan{spec,
                  topos[d],
                  formats[d],
                  DestinationSpec(*spec, formats[d]),
                  nullptr,
                  {}});
  PlanOptions plan_options = p->formats.plan_options();
  plan_options.fanout_gpus_per_node = options.fanout_gpus_per_node;
  if (d > 0 && options.fanout_gpus_per_node == 0) {
    p->copied = exec::SharedShards(*spec, topos, formats, d);
    plan_options.skip_dst = exec::SkipKeys(p->copied, spec->params.size());
  }
  p->params_replanned = spec->params.size();
  std::optional<Result<ReshardPlan>> rebuilt = Rebuild(
      *spec, previous, p->topo, plan_options, group, &p->params_replanned);
  Result<ReshardPlan> plan =
      rebuilt ? std::move(*rebuilt)
      : group.shares_process()
          ? BuildReshardPlan(*spec, p->topo, plan_options)
          : BuildRankReshardPlan(*spec, p->topo, group.rank(), plan_options);
  if (!plan.ok()) return plan.status();
  OffsetTasks(*plan, d * TaskSpan(group.size()));
  p->plan = std::make_shared<const ReshardPlan>(std::move(plan).value());
  return std::shared_ptr<const SessionPlan>(std::move(p));
}

// The plans of `agreed`; a destination whose only change from `previous`
// (may be null) is its expert placement is rebuilt from it.
Result<std::shared_ptr<PlanSet>> BuildPlans(
    std::shared_ptr<const ModelSpec> spec, const exec::AgreedInputs& agreed,
    const SwapOptions& options, const Communicator& group,
    const PlanSet* previous) {
  std::vector<RefitTopology> topos;
  std::vector<FormatPlan> formats;
  auto set = std::make_shared<PlanSet>();
  for (size_t d = 0; d < agreed.dsts.size(); ++d) {
    REFIT_ASSIGN_OR_RETURN(
        RefitTopology topo,
        exec::AgreedTopology(agreed, d, *spec, options, group.size()));
    FormatPlan f = IdentityFormats(*spec);
    if (options.transform || EngineLayoutCasts(*spec, topo)) {
      REFIT_ASSIGN_OR_RETURN(
          f, ResolveFormats(*spec, topo,
                            options.transform.value_or(PrecisionOptions{})));
    }
    topos.push_back(std::move(topo));
    formats.push_back(std::move(f));
    const SessionPlan* before =
        previous != nullptr && previous->plans.size() == agreed.dsts.size()
            ? previous->plans[d].get()
            : nullptr;
    REFIT_ASSIGN_OR_RETURN(
        auto plan,
        BuildDestinationPlan(spec, d, topos, formats, options, group, before));
    set->plans.push_back(std::move(plan));
    set->keys.push_back(exec::DestinationKey(agreed.dsts[d]));
  }
  return set;
}

// The plans of these records, built once per process when the ranks share
// them. Records that differ from cached ones only in expert placements
// (`shape`, an EPLB change) rebuild from those, which they replace.
Result<std::shared_ptr<const PlanSet>> FindOrBuildPlans(
    std::shared_ptr<const ModelSpec> spec, const exec::AgreedInputs& agreed,
    uint64_t records, uint64_t shape, const SwapOptions& options,
    const Communicator& group) {
  Caches& c = Global();
  const int mode = group.shares_process() ? -1 : group.rank();
  const std::pair<uint64_t, int> key(records, mode);
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.plans.find(key);
  if (it != c.plans.end()) return it->second;
  auto previous = std::find_if(c.plans.begin(), c.plans.end(), [&](auto& kv) {
    return kv.first.second == mode && kv.second->shape == shape;
  });
  REFIT_ASSIGN_OR_RETURN(
      std::shared_ptr<PlanSet> plans,
      BuildPlans(spec, agreed, options, group,
                 previous == c.plans.end() ? nullptr : previous->second.get()));
  plans->shape = shape;
  if (previous != c.plans.end()) c.plans.erase(previous);
  c.plans[key] = plans;
  return std::shared_ptr<const PlanSet>(std::move(plans));
}

// This rank's sessions for the inputs of every rank: from the cache, or
// built (then `*built` is set). `*host_only` (may be null): no rank binds
// device memory.
Result<std::shared_ptr<RankSessions>> FindOrBuildSession(
    const ShardedModel* src, Dsts dsts, Communicator& group,
    const SwapOptions& options, bool* built, bool* host_only = nullptr) {
  const Result<std::string> mine =
      exec::InputsRecord(src, dsts, group.rank(), options);
  REFIT_ASSIGN_OR_RETURN(std::vector<std::string> records,
                         exec::GatherValues(group, mine));
  if (host_only != nullptr) *host_only = exec::GroupBindsHostOnly(records);
  const uint64_t fp = exec::RecordsFingerprint(records);
  const std::pair<uint64_t, uint64_t> key(group.id(), fp);
  Caches& c = Global();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.sessions.find(key);
    if (it != c.sessions.end()) return it->second.first;
  }
  *built = true;
  // Only on a miss: a regex over every record.
  const uint64_t shape = exec::PlacementFreeFingerprint(records);
  Result<exec::AgreedInputs> agreed = exec::AgreeOnRecords(records);
  std::shared_ptr<RankSessions> session;
  Status st = agreed.status();
  if (st.ok() && SpecOf(src, dsts) != nullptr) {
    auto plans =
        FindOrBuildPlans(SpecOf(src, dsts), *agreed, fp, shape, options, group);
    st = plans.status();
    if (st.ok()) {
      session = std::make_shared<RankSessions>((*plans)->plans, (*plans)->keys,
                                               group.rank());
    }
  }
  REFIT_RETURN_IF_ERROR(exec::AgreeOnStatus(group, st));
  std::lock_guard<std::mutex> lock(c.mu);
  // A session of another expert placement is replaced, not kept beside.
  std::erase_if(c.sessions, [&](const auto& kv) {
    return kv.first.first == group.id() && kv.second.second == shape;
  });
  c.sessions[key] = {session, shape};
  return session;
}

// Checks this rank's models and points the sessions at them: with
// SwapOptions::atomic at `shadow.current`, a shadow copy of the destination
// model (not yet filled) with the same names, shapes, dtypes and strides, so
// binding it checks the caller's tensors and names them alike. Errors:
// CheckOneDestination's, ShadowCopy's, the binding's, CheckDigestable's.
Status BindRank(RankSessions* session, const ShardedModel* src, Dsts dsts,
                int rank, const CopyService& service,
                const SwapOptions& options, KeptShadow& shadow) {
  if (session == nullptr) {
    if (src == nullptr && dsts.empty()) return OkStatus();
    return Internal("rank " + std::to_string(rank) +
                    ": a model but no session");
  }
  REFIT_RETURN_IF_ERROR(CheckOneDestination(dsts, options, rank));
  const ShardedModel* dst = OnlyDst(dsts);
  std::vector<DestinationModel> bound(dsts.begin(), dsts.end());
  if (options.atomic && dst != nullptr) {
    REFIT_ASSIGN_OR_RETURN(ShadowCopy copy,
                           ShadowCopy::Create(*dst, rank, shadow.previous()));
    shadow.current.emplace(std::move(copy));
    bound[0].model = &shadow.current->model();
  }
  REFIT_RETURN_IF_ERROR(session->Bind(src, bound, service.capabilities()));
  return CheckDigestable(dst, options, rank);
}

Result<SwapReport> Swap(const ShardedModel* src, Dsts dsts, Communicator& group,
                        CopyService& transport, const SwapOptions& options) {
  const auto start = Clock::now();
  SessionAccess::SetPartialTensors(group, {});
  SwapReport report;
  bool host_only = false;
  REFIT_ASSIGN_OR_RETURN(std::shared_ptr<RankSessions> session,
                         FindOrBuildSession(src, dsts, group, options,
                                            &report.plan_built, &host_only));
  // Checksums: every message of this refit through a checksum layer whose
  // epoch is the refit's weight version (alike on every rank). kAuto decides
  // from the records every rank holds, so all ranks decide alike.
  report.verified = options.verify == VerifyMode::kChecksum ||
                    (options.verify == VerifyMode::kAuto && host_only);
  std::optional<exec::ChecksumCopyService> checked;
  if (report.verified) checked.emplace(transport, group.weight_version());
  CopyService& service = checked ? *checked : transport;
  const ShardedModel* dst = OnlyDst(dsts);
  KeptShadow kept(group.id(), options.atomic && dst != nullptr);
  REFIT_RETURN_IF_ERROR(exec::AgreeOnStatus(
      group, BindRank(session.get(), src, dsts, group.rank(), service, options,
                      kept)));
  std::optional<ShadowCopy>& shadow = kept.current;
  if (checked && session) {
    checked->set_describer([s = session.get()](int from, int to, uint64_t t) {
      return s->DescribeMessage(from, to, t);
    });
  }
  report.plan_ms = MsSince(start);
  if (shadow) {
    const auto fill = Clock::now();
    shadow->Fill();
    report.shadow_bytes = shadow->bytes();
    report.shadow_ms = MsSince(fill);
  }
  if (report.plan_built && session) {
    report.params_replanned = session->params_replanned();
  }
  Status ran = session ? session->Execute(service, options.cuda_stream, report)
                       : OkStatus();
  // The caller's tensors this refit may have written from here on.
  const Dsts written = shadow ? Dsts{} : dsts;
  // A silent peer will not answer the agreement either: fail now rather than
  // after a second timeout (the peers time out on their own).
  if (ran.code() == StatusCode::kDeadlineExceeded) {
    return WithPartialTensors(ran, group, written);
  }
  // The agreement round: the version advances (and a shadow is published)
  // only once every rank said its refit succeeded.
  const Status agreed = exec::AgreeOnStatus(group, ran);
  if (!agreed.ok()) return WithPartialTensors(agreed, group, written);
  if (shadow) {
    const auto publish = Clock::now();
    shadow->Publish();
    report.publish_ms = MsSince(publish);
  }
  report.weight_version = SessionAccess::BumpWeightVersion(group);
  if (options.dst_digests && dst != nullptr) report.dst_digests = Digests(*dst);
  report.total_ms = MsSince(start);
  return report;
}

// The single-destination calls' `dst` at SwapOptions::dst_rank_offset.
std::vector<DestinationModel> OneDestination(const ShardedModel* dst,
                                             const SwapOptions& options) {
  if (dst == nullptr) return {};
  return {DestinationModel{dst, options.dst_rank_offset}};
}

}  // namespace

Status PrepareSwapModelWeights(const ShardedModel* src, Dsts dsts,
                               Communicator& group,
                               const SwapOptions& options) {
  bool built = false;
  return FindOrBuildSession(src, dsts, group, options, &built).status();
}

Status PrepareSwapModelWeights(const ShardedModel* src, const ShardedModel* dst,
                               Communicator& group,
                               const SwapOptions& options) {
  return PrepareSwapModelWeights(src, OneDestination(dst, options), group,
                                 options);
}

Result<CopyService*> GetOrCreateService(Communicator& group) {
  Caches& c = Global();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.services.find(group.id());
    if (it != c.services.end()) return it->second.get();
  }
  REFIT_ASSIGN_OR_RETURN(std::unique_ptr<CopyService> service,
                         group.CreateCopyService());
  std::lock_guard<std::mutex> lock(c.mu);
  auto& slot = c.services[group.id()];
  slot = std::move(service);
  return slot.get();
}

Result<SwapReport> SwapModelWeights(const ShardedModel* src,
                                    const ShardedModel* dst,
                                    Communicator& group,
                                    const SwapOptions& options) {
  return SwapModelWeights(src, OneDestination(dst, options), group, options);
}

Result<SwapReport> SwapModelWeights(const ShardedModel* src, Dsts dsts,
                                    Communicator& group,
                                    const SwapOptions& options) {
  REFIT_ASSIGN_OR_RETURN(CopyService * service, GetOrCreateService(group));
  Result<SwapReport> report = Swap(src, dsts, group, *service, options);
  if (!report.ok()) {
    // A transport may be unusable after a failed run: the next call opens a
    // new endpoint.
    Caches& c = Global();
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.services.find(group.id());
    if (it != c.services.end()) {
      (void)it->second->Close();
      c.services.erase(it);
    }
  }
  return report;
}

Result<SwapReport> ReshardModelWeights(const ShardedModel* src,
                                       const ShardedModel* dst,
                                       Communicator& group,
                                       CopyService& service,
                                       const SwapOptions& options) {
  return Swap(src, OneDestination(dst, options), group, service, options);
}

Result<SwapReport> ReshardModelWeights(const ShardedModel* src, Dsts dsts,
                                       Communicator& group,
                                       CopyService& service,
                                       const SwapOptions& options) {
  return Swap(src, dsts, group, service, options);
}

void exec::ForgetCommunicator(uint64_t id) {
  Caches& c = Global();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.services.find(id);
  if (it != c.services.end()) {
    (void)it->second->Close();
    c.services.erase(it);
  }
  std::erase_if(c.sessions,
                [id](const auto& kv) { return kv.first.first == id; });
  c.shadows.erase(id);
}

void ClearServiceCache() {
  Caches& c = Global();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [id, service] : c.services) (void)service->Close();
  c.services.clear();
}

void ClearPlanCache() {
  Caches& c = Global();
  std::lock_guard<std::mutex> lock(c.mu);
  c.plans.clear();
  c.sessions.clear();
  c.shadows.clear();
}

void ClearAllCaches() {
  ClearServiceCache();
  ClearPlanCache();
}

}  // namespace refit
