#include "refit/exec/session/session_inputs.h"

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
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

// "host" when every tensor of both models is host memory, else "device".
std::string_view MemoryField(const ShardedModel* src, const ShardedModel* dst) {
  for (const ShardedModel* m : {src, dst}) {
    if (m == nullptr) continue;
    for (const auto& [name, view] : m->tensors) {
      if (view.memory != MemoryKind::kHost) return "device";
    }
  }
  return "host";
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

}  // namespace

Result<std::string> InputsRecord(const ShardedModel* src,
                                 const ShardedModel* dst, int group_rank,
                                 const SwapOptions& options) {
  REFIT_RETURN_IF_ERROR(
      CheckRank(src, "source", options.src_rank_offset, group_rank));
  REFIT_RETURN_IF_ERROR(
      CheckRank(dst, "destination", options.dst_rank_offset, group_rank));
  std::string model = "-";
  for (const ShardedModel* m : {src, dst}) {
    if (m == nullptr) continue;
    const std::string fp = Hex(SpecFingerprint(*m->spec));
    if (model != "-" && model != fp) {
      return InvalidArgument(
          "the source and destination models have different specs (names, "
          "shapes or dtypes)");
    }
    model = fp;
  }
  return "model=" + model + ";src=" + SideField(src) +
         ";dst=" + SideField(dst) +
         ";offsets=" + std::to_string(options.src_rank_offset) + "," +
         std::to_string(options.dst_rank_offset) +
         ";transform=" + TransformField(options) +
         ";fanout=" + std::to_string(options.fanout_gpus_per_node) +
         ";verify=" + std::to_string(static_cast<int>(options.verify)) +
         ";atomic=" + (options.atomic ? "1" : "0") +
         ";memory=" + std::string(MemoryField(src, dst));
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
      const bool optional = f == "model" || f == "src" || f == "dst";
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
  if (!seen.contains("dst")) {
    return InvalidArgument("no rank of the group holds a destination model");
  }
  AgreedInputs a;
  REFIT_ASSIGN_OR_RETURN(auto src, ParseSide(seen["src"].second));
  REFIT_ASSIGN_OR_RETURN(auto dst, ParseSide(seen["dst"].second));
  std::tie(a.src, a.src_world) = src;
  std::tie(a.dst, a.dst_world) = dst;
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

Result<RefitTopology> AgreedTopology(const AgreedInputs& agreed,
                                     const ModelSpec& spec,
                                     const SwapOptions& options, int world) {
  REFIT_ASSIGN_OR_RETURN(Layout src,
                         Layout::Create(agreed.src, agreed.src_world, spec));
  REFIT_ASSIGN_OR_RETURN(Layout dst,
                         Layout::Create(agreed.dst, agreed.dst_world, spec));
  return MakeTopology(src, dst, options.src_rank_offset,
                      options.dst_rank_offset, world);
}

}  // namespace refit::exec
