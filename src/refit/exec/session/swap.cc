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
using exec::RankSession;
using exec::SessionPlan;
using exec::ShadowCopy;

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
// (nullptr: none of the caller's bytes, e.g. with SwapOptions::atomic):
// records the tensors on `group` (Communicator::partial_tensors) and names
// them at the end of the message.
Status WithPartialTensors(const Status& failed, Communicator& group,
                          const ShardedModel* written) {
  if (written == nullptr || written->tensors.empty()) return failed;
  std::vector<std::string> names;
  names.reserve(written->tensors.size());
  for (const auto& [name, view] : written->tensors) names.push_back(name);
  std::sort(names.begin(), names.end());
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

// Process-wide caches, as Megatron's module-level _plan_cache and
// _service_cache (refit.py).
struct Caches {
  std::mutex mu;
  // Plans shared by the ranks of this process: (records, rank or -1).
  std::map<std::pair<uint64_t, int>, std::shared_ptr<const SessionPlan>> plans;
  // (communicator, records) -> this rank's session; nullptr for a rank that
  // holds neither side.
  std::map<std::pair<uint64_t, uint64_t>, std::shared_ptr<RankSession>>
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

// The spec this rank brings (both models have the same, checked).
std::shared_ptr<const ModelSpec> SpecOf(const ShardedModel* src,
                                        const ShardedModel* dst) {
  return src != nullptr ? src->spec : dst != nullptr ? dst->spec : nullptr;
}

Result<std::shared_ptr<const SessionPlan>> BuildPlan(
    std::shared_ptr<const ModelSpec> spec, const exec::AgreedInputs& agreed,
    const SwapOptions& options, const Communicator& group) {
  REFIT_ASSIGN_OR_RETURN(
      RefitTopology topo,
      exec::AgreedTopology(agreed, *spec, options, group.size()));
  FormatPlan formats = IdentityFormats(*spec);
  if (options.transform) {
    REFIT_ASSIGN_OR_RETURN(formats,
                           ResolveFormats(*spec, topo, *options.transform));
  }
  ModelSpec dst_spec = DestinationSpec(*spec, formats);
  auto p = std::make_shared<SessionPlan>(SessionPlan{
      spec, std::move(topo), std::move(formats), std::move(dst_spec), nullptr});
  PlanOptions plan_options = p->formats.plan_options();
  plan_options.fanout_gpus_per_node = options.fanout_gpus_per_node;
  Result<ReshardPlan> plan =
      group.shares_process()
          ? BuildReshardPlan(*spec, p->topo, plan_options)
          : BuildRankReshardPlan(*spec, p->topo, group.rank(), plan_options);
  if (!plan.ok()) return plan.status();
  p->plan = std::make_shared<const ReshardPlan>(std::move(plan).value());
  return std::shared_ptr<const SessionPlan>(std::move(p));
}

// The plan of these records, built once per process when the ranks share it.
Result<std::shared_ptr<const SessionPlan>> FindOrBuildPlan(
    std::shared_ptr<const ModelSpec> spec, const exec::AgreedInputs& agreed,
    uint64_t records, const SwapOptions& options, const Communicator& group) {
  Caches& c = Global();
  const std::pair<uint64_t, int> key(
      records, group.shares_process() ? -1 : group.rank());
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.plans.find(key);
  if (it != c.plans.end()) return it->second;
  REFIT_ASSIGN_OR_RETURN(auto plan, BuildPlan(spec, agreed, options, group));
  c.plans[key] = plan;
  return plan;
}

// This rank's session for the inputs of every rank: from the cache, or built
// (then `*built` is set). `*host_only` (may be null): no rank binds device
// memory.
Result<std::shared_ptr<RankSession>> FindOrBuildSession(
    const ShardedModel* src, const ShardedModel* dst, Communicator& group,
    const SwapOptions& options, bool* built, bool* host_only = nullptr) {
  const Result<std::string> mine =
      exec::InputsRecord(src, dst, group.rank(), options);
  REFIT_ASSIGN_OR_RETURN(std::vector<std::string> records,
                         exec::GatherValues(group, mine));
  if (host_only != nullptr) *host_only = exec::GroupBindsHostOnly(records);
  const uint64_t fp = exec::RecordsFingerprint(records);
  const std::pair<uint64_t, uint64_t> key(group.id(), fp);
  Caches& c = Global();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.sessions.find(key);
    if (it != c.sessions.end()) return it->second;
  }
  *built = true;
  Result<exec::AgreedInputs> agreed = exec::AgreeOnRecords(records);
  std::shared_ptr<RankSession> session;
  Status st = agreed.status();
  if (st.ok() && SpecOf(src, dst) != nullptr) {
    auto plan = FindOrBuildPlan(SpecOf(src, dst), *agreed, fp, options, group);
    st = plan.status();
    if (st.ok()) session = std::make_shared<RankSession>(*plan, group.rank());
  }
  REFIT_RETURN_IF_ERROR(exec::AgreeOnStatus(group, st));
  std::lock_guard<std::mutex> lock(c.mu);
  c.sessions[key] = session;
  return session;
}

// Checks this rank's models and points the session at them: with
// SwapOptions::atomic at `shadow.current`, a shadow copy of `dst` (not yet
// filled) with the same names, shapes, dtypes and strides, so binding it
// checks the caller's tensors and names them alike. Errors: ShadowCopy's,
// the binding's, CheckDigestable's.
Status BindRank(RankSession* session, const ShardedModel* src,
                const ShardedModel* dst, int rank, const CopyService& service,
                const SwapOptions& options, KeptShadow& shadow) {
  if (session == nullptr) {
    if (src == nullptr && dst == nullptr) return OkStatus();
    return Internal("rank " + std::to_string(rank) +
                    ": a model but no session");
  }
  const ShardedModel* bound = dst;
  if (options.atomic && dst != nullptr) {
    REFIT_ASSIGN_OR_RETURN(ShadowCopy copy,
                           ShadowCopy::Create(*dst, rank, shadow.previous()));
    shadow.current.emplace(std::move(copy));
    bound = &shadow.current->model();
  }
  REFIT_RETURN_IF_ERROR(session->Bind(src, bound, service.capabilities()));
  return CheckDigestable(dst, options, rank);
}

Result<SwapReport> Swap(const ShardedModel* src, const ShardedModel* dst,
                        Communicator& group, CopyService& transport,
                        const SwapOptions& options) {
  const auto start = Clock::now();
  SessionAccess::SetPartialTensors(group, {});
  SwapReport report;
  bool host_only = false;
  REFIT_ASSIGN_OR_RETURN(std::shared_ptr<RankSession> session,
                         FindOrBuildSession(src, dst, group, options,
                                            &report.plan_built, &host_only));
  // Checksums: every message of this refit through a checksum layer whose
  // epoch is the refit's weight version (alike on every rank). kAuto decides
  // from the records every rank holds, so all ranks decide alike.
  report.verified = options.verify == VerifyMode::kChecksum ||
                    (options.verify == VerifyMode::kAuto && host_only);
  std::optional<exec::ChecksumCopyService> checked;
  if (report.verified) checked.emplace(transport, group.weight_version());
  CopyService& service = checked ? *checked : transport;
  KeptShadow kept(group.id(), options.atomic && dst != nullptr);
  REFIT_RETURN_IF_ERROR(exec::AgreeOnStatus(
      group,
      BindRank(session.get(), src, dst, group.rank(), service, options, kept)));
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
  Status ran = session ? session->Execute(service, options.cuda_stream, report)
                       : OkStatus();
  // The caller's tensors this refit may have written from here on.
  const ShardedModel* written = shadow ? nullptr : dst;
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

}  // namespace

Status PrepareSwapModelWeights(const ShardedModel* src, const ShardedModel* dst,
                               Communicator& group,
                               const SwapOptions& options) {
  bool built = false;
  return FindOrBuildSession(src, dst, group, options, &built).status();
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
  REFIT_ASSIGN_OR_RETURN(CopyService * service, GetOrCreateService(group));
  Result<SwapReport> report = Swap(src, dst, group, *service, options);
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
  return Swap(src, dst, group, service, options);
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
