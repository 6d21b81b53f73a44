#include "refit/exec/session/session_inputs.h"

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <regex>
#include <set>
#include <string_view>

#include "refit/core/plan_cache.h"

namespace refit::exec {

namespace {

constexpr std::array<std::string_view, 8> kFields = {
    "model",     "src",    "dst",    "offsets",
    "transform", "fanout", "verify", "atomic"};

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016llx",
                static_cast<unsigned long long>(v));
  return buf;
}

bool HostOnly(const ShardedModel* m) {
  if (m == nullptr) return true;
  for (const auto& [name, view] : m->tensors) {
    if (view.memory != MemoryKind::kHost) return false;
  }
  return true;
}

// "host" when every tensor of every model is host memory, else "device".
std::string_view MemoryField(const ShardedModel* src,
                             std::span<const DestinationModel> dsts) {
  bool host = HostOnly(src);
  for (const DestinationModel& d : dsts) host = host && HostOnly(d.model);
  return host ? "host" : "device";
}

// "LAYOUT@WORLD+OFFSET|..." of the destination models, or "-"; two with
// the same text are an error.
Result<std::string> DstField(std::span<const DestinationModel> dsts) {
  std::vector<std::string> keys;
  for (const DestinationModel& d : dsts) {
    keys.push_back(DestinationKey(*d.model, d.rank_offset));
  }
  std::sort(keys.begin(), keys.end());
  std::string field;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i > 0 && keys[i] == keys[i - 1]) {
      return InvalidArgument("two destination models with layout " + keys[i] +
                             " (layout@world+rank offset)");
    }
    field += (i > 0 ? "|" : "") + keys[i];
  }
  return keys.empty() ? std::string("-") : field;
}

// "tp=..,pp=..@world" of a side, or "-".
std::string SideField(const ShardedModel* m) {
  if (m == nullptr) return "-";
  return m->layout.ToString() + "@" + std::to_string(m->world_size);
}

void Append(std::string& key, std::string_view text) {
  key.append(text).push_back('\x1f');
}

// Every field of the transform that changes formats or plans.
std::string TransformField(const SwapOptions& o) {
  if (!o.transform) return "-";
  const PrecisionOptions& t = *o.transform;
  std::string k;
  Append(k, t.dst_model_dtype ? DTypeName(*t.dst_model_dtype) : "-");
  for (const FormatRule& r : t.rules) {
    Append(k, r.pattern);
    Append(k, std::to_string(static_cast<int>(r.kind)) + "," +
                  std::string(DTypeName(r.dtype)) + "," +
                  std::to_string(r.buffers));
  }
  Append(k, std::to_string(static_cast<int>(t.cast_on)));
  Append(k, t.quantize_on ? std::to_string(static_cast<int>(*t.quantize_on))
                          : "-");
  Append(k, std::to_string(t.fp8.block.rows) + "x" +
                std::to_string(t.fp8.block.cols) + "," +
                std::to_string(static_cast<int>(t.fp8.scale_format)) + "," +
                std::to_string(t.fp8.min_amax));
  Append(k, std::to_string(t.mxfp8_swizzled));
  Append(k, std::to_string(t.kept_fp8_block.rows) + "x" +
                std::to_string(t.kept_fp8_block.cols));
  return Hex(XXH64(k.data(), k.size(), 0));
}

Status CheckRank(const ShardedModel* m, const char* side, int offset,
                 int group_rank) {
  if (m == nullptr) return OkStatus();
  if (m->spec == nullptr) {
    return InvalidArgument(std::string(side) + " model has no spec");
  }
  if (m->rank + offset != group_rank) {
    return InvalidArgument(std::string(side) + " model is rank " +
                           std::to_string(m->rank) + " of its layout, plus " +
                           side + " rank offset " + std::to_string(offset) +
                           " is not this group rank " +
                           std::to_string(group_rank));
  }
  return OkStatus();
}

// The fields of one record.
std::map<std::string, std::string, std::less<>> Fields(std::string_view rec) {
  std::map<std::string, std::string, std::less<>> out;
  while (!rec.empty()) {
    const size_t end = std::min(rec.find(';'), rec.size());
    const std::string_view kv = rec.substr(0, end);
    const size_t eq = kv.find('=');
    out[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    rec.remove_prefix(std::min(end + 1, rec.size()));
  }
  return out;
}

Status Differ(int r, int q, std::string_view field, const std::string& a,
              const std::string& b) {
  return FailedPrecondition("rank " + std::to_string(r) +
                            "'s inputs differ from rank " + std::to_string(q) +
                            "'s: " + std::string(field) + " " + a + " vs " + b);
}

Result<std::pair<ParallelConfig, int>> ParseSide(const std::string& field) {
  const size_t at = field.find('@');
  REFIT_ASSIGN_OR_RETURN(ParallelConfig c,
                         ParseParallelConfig(field.substr(0, at)));
  return std::pair(c, std::stoi(field.substr(at + 1)));
}

// The dst field of each record, and its destinations.
struct DstFields {
  std::vector<std::string> text;
  std::vector<std::set<std::string>> keys;
};

DstFields ParseDstFields(const std::vector<std::string>& records) {
  DstFields out;
  for (const std::string& r : records) {
    const auto fields = Fields(r);
    const auto dst = fields.find("dst");
    out.text.push_back(dst == fields.end() ? "-" : dst->second);
    std::set<std::string>& keys = out.keys.emplace_back();
    std::string_view field = out.text.back();
    if (field == "-") continue;
    while (!field.empty()) {
      const size_t bar = std::min(field.find('|'), field.size());
      keys.emplace(field.substr(0, bar));
      field.remove_prefix(std::min(bar + 1, field.size()));
    }
  }
  return out;
}

// Every destination some record names, in text order; every rank of a
// destination's range must name it. Errors: kFailedPrecondition "rank R's
// inputs differ from rank Q's: dst ..." for the first rank that does not.
Result<std::vector<AgreedDestination>> UnionOfDestinations(
    const std::vector<std::string>& records) {
  const DstFields f = ParseDstFields(records);
  std::set<std::string> keys;
  for (const auto& k : f.keys) keys.insert(k.begin(), k.end());
  std::vector<AgreedDestination> out;
  for (const std::string& key : keys) {
    const size_t plus = key.rfind('+');
    REFIT_ASSIGN_OR_RETURN(auto side, ParseSide(key.substr(0, plus)));
    const AgreedDestination d{side.first, side.second,
                              std::stoi(key.substr(plus + 1))};
    int named_by = -1;
    for (size_t r = 0; r < records.size() && named_by < 0; ++r) {
      if (f.keys[r].contains(key)) named_by = static_cast<int>(r);
    }
    for (int r = d.offset; r < d.offset + d.world; ++r) {
      if (r < 0 || r >= static_cast<int>(records.size())) break;
      if (!f.keys[r].contains(key)) {
        return Differ(r, named_by, "dst", f.text[r], f.text[named_by]);
      }
    }
    out.push_back(d);
  }
  return out;
}

}  // namespace

std::string DestinationKey(const ShardedModel& model, int offset) {
  return SideField(&model) + "+" + std::to_string(offset);
}

std::string DestinationKey(const AgreedDestination& d) {
  return d.layout.ToString() + "@" + std::to_string(d.world) + "+" +
         std::to_string(d.offset);
}

Result<std::string> InputsRecord(const ShardedModel* src,
                                 std::span<const DestinationModel> dsts,
                                 int group_rank, const SwapOptions& options) {
  REFIT_RETURN_IF_ERROR(
      CheckRank(src, "source", options.src_rank_offset, group_rank));
  std::vector<const ShardedModel*> models = {src};
  for (const DestinationModel& d : dsts) {
    REFIT_RETURN_IF_ERROR(
        CheckRank(d.model, "destination", d.rank_offset, group_rank));
    if (d.model == nullptr) {
      return InvalidArgument("a destination model is null");
    }
    models.push_back(d.model);
  }
  std::string model = "-";
  for (const ShardedModel* m : models) {
    if (m == nullptr) continue;
    const std::string fp = Hex(SpecFingerprint(*m->spec));
    if (model != "-" && model != fp) {
      return InvalidArgument(
          "the source and destination models have different specs (names, "
          "shapes or dtypes)");
    }
    model = fp;
  }
  REFIT_ASSIGN_OR_RETURN(std::string dst, DstField(dsts));
  return "model=" + model + ";src=" + SideField(src) + ";dst=" + dst +
         ";offsets=" + std::to_string(options.src_rank_offset) +
         ";transform=" + TransformField(options) +
         ";fanout=" + std::to_string(options.fanout_gpus_per_node) +
         ";verify=" + std::to_string(static_cast<int>(options.verify)) +
         ";atomic=" + (options.atomic ? "1" : "0") +
         ";memory=" + std::string(MemoryField(src, dsts));
}

bool GroupBindsHostOnly(const std::vector<std::string>& records) {
  return std::none_of(records.begin(), records.end(), [](const std::string& r) {
    return r.find(";memory=device") != std::string::npos;
  });
}

Result<AgreedInputs> AgreeOnRecords(const std::vector<std::string>& records) {
  std::map<std::string_view, std::pair<int, std::string>> seen;
  for (size_t r = 0; r < records.size(); ++r) {
    auto fields = Fields(records[r]);
    for (std::string_view f : kFields) {
      const std::string& v = fields[std::string(f)];
      if (f == "dst") continue;  // each rank names its own destinations
      const bool optional = f == "model" || f == "src";
      if (optional && v == "-") continue;
      auto [it, fresh] = seen.try_emplace(f, static_cast<int>(r), v);
      if (!fresh && it->second.second != v) {
        return Differ(static_cast<int>(r), it->second.first, f, v,
                      it->second.second);
      }
    }
  }
  if (!seen.contains("src")) {
    return InvalidArgument("no rank of the group holds a source model");
  }
  AgreedInputs a;
  REFIT_ASSIGN_OR_RETURN(a.dsts, UnionOfDestinations(records));
  if (a.dsts.empty()) {
    return InvalidArgument("no rank of the group holds a destination model");
  }
  REFIT_ASSIGN_OR_RETURN(auto src, ParseSide(seen["src"].second));
  std::tie(a.src, a.src_world) = src;
  return a;
}

uint64_t RecordsFingerprint(const std::vector<std::string>& records) {
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  for (const std::string& r : records) {
    XXH64_update(st, r.data(), r.size() + 1);  // with its terminator
  }
  const uint64_t h = XXH64_digest(st);
  XXH64_freeState(st);
  return h;
}

uint64_t PlacementFreeFingerprint(const std::vector<std::string>& records) {
  static const std::regex kPlacement(",placement=[0-9:]+");
  std::vector<std::string> stripped;
  stripped.reserve(records.size());
  for (const std::string& r : records) {
    stripped.push_back(std::regex_replace(r, kPlacement, ""));
  }
  return RecordsFingerprint(stripped);
}

Result<RefitTopology> AgreedTopology(const AgreedInputs& agreed, size_t d,
                                     const ModelSpec& spec,
                                     const SwapOptions& options, int world) {
  const AgreedDestination& to = agreed.dsts[d];
  REFIT_ASSIGN_OR_RETURN(Layout src,
                         Layout::Create(agreed.src, agreed.src_world, spec));
  REFIT_ASSIGN_OR_RETURN(Layout dst, Layout::Create(to.layout, to.world, spec));
  return MakeTopology(src, dst, options.src_rank_offset, to.offset, world);
}

}  // namespace refit::exec
