#include "refit/core/layout.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace refit {

namespace {

Status ParseInt(std::string_view key, std::string_view value, int min_value,
                int* out) {
  int v = 0;
  auto [ptr, ec] =
      std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || ptr != value.data() + value.size() ||
      v < min_value) {
    return InvalidArgument("layout: bad value '" + std::string(value) +
                           "' for " + std::string(key) + " (integer >= " +
                           std::to_string(min_value) + " expected)");
  }
  *out = v;
  return OkStatus();
}

int* FieldFor(ParallelConfig& c, std::string_view key, int* min_value) {
  *min_value = 1;
  if (key == "tp") return &c.tp;
  if (key == "pp") return &c.pp;
  if (key == "ep") return &c.ep;
  if (key == "etp") return &c.etp;
  if (key == "cp") return &c.cp;
  *min_value = 0;
  if (key == "pp_first") return &c.pp_first;
  if (key == "pp_last") return &c.pp_last;
  return nullptr;
}

Status CheckDivides(const std::string& what, int64_t n, int64_t by,
                    const char* axis) {
  if (by > 0 && n % by == 0) return OkStatus();
  return InvalidArgument(what + " = " + std::to_string(n) +
                         " is not divisible by " + axis + "=" +
                         std::to_string(by));
}

// The world size must be a multiple of a group's size, the product of
// `sizes` ("tp*cp*pp" or "etp*ep*pp"), which is returned in *product. Each size
// may be up to INT_MAX, so the product is formed in 64 bits and given up once
// it passes the world size (it cannot divide it then), before it can overflow.
Status CheckWorldDivides(int world_size, std::initializer_list<int> sizes,
                         const char* what, int* product) {
  int64_t p = 1;
  for (int s : sizes) {
    p *= s;
    if (p > world_size) {
      return InvalidArgument("world size " + std::to_string(world_size) +
                             " is not divisible by " + what +
                             " (larger than the world size)");
    }
  }
  if (world_size % p != 0) {
    return InvalidArgument("world size " + std::to_string(world_size) +
                           " is not divisible by " + what + " = " +
                           std::to_string(p));
  }
  *product = static_cast<int>(p);
  return OkStatus();
}

// Every split dimension must divide evenly over its group (vocab is padded).
Status CheckParamSplits(const ModelSpec& spec, int tp, int etp) {
  for (const ParamSpec& p : spec.params) {
    const int n = p.tp_group == TpGroup::kExpert ? etp : tp;
    const char* axis = p.tp_group == TpGroup::kExpert ? "etp" : "tp";
    switch (p.shard) {
      case ShardKind::kColumn:
        REFIT_RETURN_IF_ERROR(
            CheckDivides(p.name + " dim 0", p.shape[0], n, axis));
        break;
      case ShardKind::kRow:
        REFIT_RETURN_IF_ERROR(
            CheckDivides(p.name + " dim 1", p.shape[1], n, axis));
        break;
      case ShardKind::kGatedColumn:
        REFIT_RETURN_IF_ERROR(
            CheckDivides(p.name + " gate/up rows", p.shape[0] / 2, n, axis));
        break;
      default:
        break;
    }
  }
  return OkStatus();
}

Status CheckModelSizes(const ParallelConfig& c, const ModelSpec& spec) {
  if (spec.num_experts == 0 && c.ep > 1) {
    return InvalidArgument("layout ep=" + std::to_string(c.ep) +
                           ": model has no routed experts");
  }
  if (spec.num_experts > 0 && c.expert_placement.empty()) {
    REFIT_RETURN_IF_ERROR(
        CheckDivides("num_experts", spec.num_experts, c.ep, "ep"));
  }
  REFIT_RETURN_IF_ERROR(CheckDivides("num_attention_heads",
                                     spec.num_attention_heads, c.tp, "tp"));
  const int ng = spec.num_query_groups;
  if (ng > 0 && ng % c.tp != 0 && c.tp % ng != 0) {
    return InvalidArgument("num_query_groups = " + std::to_string(ng) +
                           " and tp=" + std::to_string(c.tp) +
                           ": neither divides the other");
  }
  return CheckParamSplits(spec, c.tp, c.expert_tp());
}

constexpr std::string_view kPartNames[] = {"all", "main", "mtp"};

constexpr std::string_view kFamilyNames[] = {"megatron", "vllm", "sglang",
                                             "hf"};

// The family's own limits (LayoutFamily).
Status CheckFamily(const ParallelConfig& c, const ModelSpec& spec) {
  if (c.family == LayoutFamily::kMegatron) return OkStatus();
  const std::string family(LayoutFamilyName(c.family));
  if (c.cp != 1) return InvalidArgument("family " + family + " needs cp=1");
  if (c.family == LayoutFamily::kHf && (c.tp != 1 || c.expert_tp() != 1)) {
    return InvalidArgument(
        "family hf holds whole Hugging Face tensors: tp and etp must be 1");
  }
  for (const ParamSpec& p : spec.params) {
    if (p.name.find("cross_attention.") != std::string::npos) {
      return InvalidArgument("family " + family + ": tensor " + p.name +
                             ": cross attention (Mllama) has no " + family +
                             " layout here");
    }
  }
  if (c.family == LayoutFamily::kHf) return OkStatus();
  // VocabParallelEmbedding pads to 64 and splits the padded rows evenly.
  const int64_t padded = (spec.vocab_size + 63) / 64 * 64;
  return CheckDivides("vocabulary padded to 64 (" + family + ")", padded, c.tp,
                      "tp");
}

// "0:1:2:3:0" -> {0, 1, 2, 3, 0}.
Result<std::vector<int>> ParsePlacement(std::string_view text) {
  std::vector<int> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(':', pos);
    if (end == std::string_view::npos) end = text.size();
    int v = 0;
    REFIT_RETURN_IF_ERROR(
        ParseInt("placement", text.substr(pos, end - pos), 0, &v));
    out.push_back(v);
    pos = end + 1;
  }
  return out;
}

// part=main / part=mtp: a model with MTP layers; the draft without a
// pipeline.
Status CheckPart(const ParallelConfig& c, const ModelSpec& spec) {
  if (c.w13_up_first && c.family != LayoutFamily::kVllm &&
      c.family != LayoutFamily::kSglang) {
    return InvalidArgument(
        "w13=up_gate is an engine layout (family vllm or "
        "sglang)");
  }
  if (c.part == ModelPart::kAll) return OkStatus();
  const std::string part(kPartNames[static_cast<int>(c.part)]);
  if (spec.mtp_layers == 0) {
    return InvalidArgument(
        "part=" + part +
        " needs a model with MTP layers (num_nextn_predict_layers, read with "
        "ModelSpecOptions::mtp / --mtp)");
  }
  if (c.part == ModelPart::kMtp && c.pp != 1) {
    return InvalidArgument("part=mtp needs pp=1");
  }
  return OkStatus();
}

Result<ModelPart> ParseModelPart(std::string_view text) {
  for (int i = 0; i < 3; ++i) {
    if (text == kPartNames[i]) return static_cast<ModelPart>(i);
  }
  return InvalidArgument("layout: unknown part '" + std::string(text) +
                         "' (all, main, mtp)");
}

}  // namespace

std::string_view LayoutFamilyName(LayoutFamily family) {
  return kFamilyNames[static_cast<int>(family)];
}

Result<LayoutFamily> ParseLayoutFamily(std::string_view text) {
  for (int i = 0; i < 4; ++i) {
    if (text == kFamilyNames[i]) return static_cast<LayoutFamily>(i);
  }
  return InvalidArgument("layout: unknown family '" + std::string(text) +
                         "' (megatron, vllm, sglang, hf)");
}

bool PartHolds(ModelPart part, const ParamSpec& p) {
  const bool mtp = p.name.starts_with("mtp.");
  switch (part) {
    case ModelPart::kAll:
      return true;
    case ModelPart::kMain:
      return !mtp;
    case ModelPart::kMtp:
      return mtp || p.placement == Placement::kFirstStage ||
             p.name == "output_layer.weight";
  }
  return true;
}

std::string ParallelConfig::ToString() const {
  std::string s = "tp=" + std::to_string(tp) + ",pp=" + std::to_string(pp) +
                  ",ep=" + std::to_string(ep) +
                  ",etp=" + std::to_string(expert_tp());
  if (cp != 1) s += ",cp=" + std::to_string(cp);
  if (pp_first >= 0) s += ",pp_first=" + std::to_string(pp_first);
  if (pp_last >= 0) s += ",pp_last=" + std::to_string(pp_last);
  if (family != LayoutFamily::kMegatron) {
    s += ",family=";
    s += LayoutFamilyName(family);
  }
  if (part != ModelPart::kAll) {
    s += ",part=";
    s += kPartNames[static_cast<int>(part)];
  }
  if (w13_up_first) s += ",w13=up_gate";
  for (size_t i = 0; i < expert_placement.size(); ++i) {
    s += (i == 0 ? ",placement=" : ":") + std::to_string(expert_placement[i]);
  }
  return s;
}

Result<ParallelConfig> ParseParallelConfig(std::string_view text) {
  ParallelConfig c;
  if (text.empty()) return InvalidArgument("layout: empty layout string");
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view item = text.substr(pos, end - pos);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return InvalidArgument(
          "layout: '" + std::string(item) +
          "' is not key=value (keys: tp, pp, ep, etp, cp, "
          "pp_first, pp_last, family, part, w13, placement)");
    }
    std::string_view key = item.substr(0, eq);
    if (key == "placement") {
      REFIT_ASSIGN_OR_RETURN(c.expert_placement,
                             ParsePlacement(item.substr(eq + 1)));
      pos = end + 1;
      continue;
    }
    if (key == "family") {
      REFIT_ASSIGN_OR_RETURN(c.family, ParseLayoutFamily(item.substr(eq + 1)));
      pos = end + 1;
      continue;
    }
    if (key == "part") {
      REFIT_ASSIGN_OR_RETURN(c.part, ParseModelPart(item.substr(eq + 1)));
      pos = end + 1;
      continue;
    }
    if (key == "w13") {
      const std::string_view v = item.substr(eq + 1);
      if (v != "gate_up" && v != "up_gate") {
        return InvalidArgument("layout: w13 '" + std::string(v) +
                               "' (gate_up, up_gate)");
      }
      c.w13_up_first = v == "up_gate";
      pos = end + 1;
      continue;
    }
    int min_value = 1;
    int* field = FieldFor(c, key, &min_value);
    if (field == nullptr) {
      return InvalidArgument("layout: unknown key '" + std::string(key) +
                             "' (keys: tp, pp, ep, etp, cp, pp_first, pp_last, "
                             "family, part, w13, placement)");
    }
    REFIT_RETURN_IF_ERROR(ParseInt(key, item.substr(eq + 1), min_value, field));
    pos = end + 1;
  }
  return c;
}

Result<Layout> Layout::Create(const ParallelConfig& c, int world_size,
                              const ModelSpec& spec) {
  const std::string where = "layout " + c.ToString() + ": ";
  if (world_size < 1) return InvalidArgument(where + "world size must be >= 1");
  int dense = 1, expert = 1;
  Status st =
      CheckWorldDivides(world_size, {c.tp, c.cp, c.pp}, "tp*cp*pp", &dense);
  if (st.ok()) {
    st = CheckWorldDivides(world_size, {c.expert_tp(), c.ep, c.pp}, "etp*ep*pp",
                           &expert);
  }
  if (!st.ok()) return InvalidArgument(where + st.message());
  st = CheckModelSizes(c, spec);
  if (st.ok()) st = CheckFamily(c, spec);
  if (st.ok()) st = CheckPart(c, spec);
  if (!st.ok()) return InvalidArgument(where + st.message());

  Layout l;
  l.config_ = c;
  l.world_ = world_size;
  l.dp_ = world_size / dense;
  l.edp_ = world_size / expert;
  l.num_layers_ = spec.num_layers;
  l.experts_per_rank_ = spec.num_experts / c.ep;
  // Pipeline split (Megatron get_num_layers_to_build / layer offsets).
  const int L = spec.num_layers;
  // 64 bits: pp_first + pp_last may pass INT_MAX.
  int64_t fixed = 0;
  int middle_stages = c.pp;
  if (c.pp_first >= 0) fixed += c.pp_first, --middle_stages;
  if (c.pp_last >= 0) fixed += c.pp_last, --middle_stages;
  if (c.pp == 1 && (c.pp_first >= 0 || c.pp_last >= 0)) {
    return InvalidArgument(where + "pp_first/pp_last need pp > 1");
  }
  const int64_t rest = L - fixed;
  if (rest < 0 || (middle_stages == 0 && rest != 0) ||
      (middle_stages > 0 && rest % middle_stages != 0)) {
    return InvalidArgument(where + "num_layers = " + std::to_string(L) +
                           " does not split over the pipeline stages (" +
                           std::to_string(rest) + " layers left for " +
                           std::to_string(middle_stages) + " stages)");
  }
  l.middle_layers_ =
      middle_stages > 0 ? static_cast<int>(rest / middle_stages) : 0;
  l.first_layers_ = c.pp_first >= 0 ? c.pp_first : l.middle_layers_;
  l.num_experts_ = spec.num_experts;
  st = l.IndexPlacement();
  if (!st.ok()) return InvalidArgument(where + st.message());
  return l;
}

Status Layout::IndexPlacement() {
  const std::vector<int>& slots = config_.expert_placement;
  if (slots.empty()) return OkStatus();
  const int ep = config_.ep, n = static_cast<int>(slots.size());
  if (num_experts_ == 0 || n % ep != 0 || n < num_experts_) {
    return InvalidArgument(
        "placement has " + std::to_string(n) +
        " slots: needs a multiple of ep=" + std::to_string(ep) +
        " and at least num_experts = " + std::to_string(num_experts_));
  }
  experts_per_rank_ = n / ep;
  slot_.assign(static_cast<size_t>(ep) * num_experts_, -1);
  expert_ranks_.assign(num_experts_, {});
  for (int s = 0; s < n; ++s) {
    const int e = slots[s], r = s / experts_per_rank_;
    if (e < 0 || e >= num_experts_) {
      return InvalidArgument("placement slot " + std::to_string(s) +
                             ": expert " + std::to_string(e) +
                             " is not in [0, " + std::to_string(num_experts_) +
                             ")");
    }
    int& at = slot_[static_cast<size_t>(r) * num_experts_ + e];
    if (at >= 0) {
      return InvalidArgument("placement: expert " + std::to_string(e) +
                             " twice on EP rank " + std::to_string(r));
    }
    at = s % experts_per_rank_;
    expert_ranks_[e].push_back(r);
  }
  return IndexExpertClasses();
}

// Experts held by the same EP ranks share a class.
Status Layout::IndexExpertClasses() {
  std::vector<std::vector<int>> classes;
  expert_class_.resize(num_experts_);
  for (int e = 0; e < num_experts_; ++e) {
    if (expert_ranks_[e].empty()) {
      return InvalidArgument("placement: expert " + std::to_string(e) +
                             " has no slot");
    }
    auto it = std::find(classes.begin(), classes.end(), expert_ranks_[e]);
    expert_class_[e] = static_cast<int>(it - classes.begin());
    if (it == classes.end()) classes.push_back(expert_ranks_[e]);
  }
  expert_classes_ = static_cast<int>(classes.size());
  return OkStatus();
}

int Layout::LocalExpertSlot(int ep_rank, int expert) const {
  if (expert < 0 || expert >= num_experts_) return -1;
  if (slot_.empty()) {
    const int local = expert - ep_rank * experts_per_rank_;
    return local >= 0 && local < experts_per_rank_ ? local : -1;
  }
  return slot_[static_cast<size_t>(ep_rank) * num_experts_ + expert];
}

std::vector<int> Layout::ExpertEpRanks(int expert) const {
  if (expert_ranks_.empty()) return {expert / experts_per_rank_};
  return expert_ranks_[expert];
}

int Layout::ExpertClass(int expert) const {
  return expert_class_.empty() ? expert / experts_per_rank_
                               : expert_class_[expert];
}

int Layout::ExpertClassCount() const {
  return expert_class_.empty() ? ep() : expert_classes_;
}

int Layout::DenseRank(int tp_rank, int cp_rank, int dp_rank,
                      int pp_rank) const {
  return tp_rank + tp() * (cp_rank + cp() * (dp_rank + dp_ * pp_rank));
}

int Layout::ExpertRank(int etp_rank, int ep_rank, int edp_rank,
                       int pp_rank) const {
  return etp_rank + etp() * (ep_rank + ep() * (edp_rank + edp_ * pp_rank));
}

int Layout::StageFirstLayer(int pp_rank) const {
  if (pp_rank == 0) return 0;
  return first_layers_ + (pp_rank - 1) * middle_layers_;
}

int Layout::StageNumLayers(int pp_rank) const {
  if (pp_rank == 0) return pp() == 1 ? num_layers_ : first_layers_;
  if (pp_rank == pp() - 1) return num_layers_ - StageFirstLayer(pp_rank);
  return middle_layers_;
}

int Layout::StageOfLayer(int layer) const {
  for (int s = 0; s < pp(); ++s) {
    if (layer < StageFirstLayer(s) + StageNumLayers(s)) return s;
  }
  return pp() - 1;
}

}  // namespace refit
