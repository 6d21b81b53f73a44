#include "refit/exec/session/agreement.h"

#include <cstdlib>
#include <optional>

namespace refit::exec {

namespace {

constexpr std::string_view kOk = "ok ";
constexpr std::string_view kError = "error ";

std::string Encode(const Result<std::string>& r) {
  if (r.ok()) return std::string(kOk) + *r;
  return std::string(kError) +
         std::to_string(static_cast<int>(r.status().code())) + " " +
         r.status().message();
}

// The error of `record`; its message already names the rank when the rank
// wrote it ("rank R: ..."), else the rank is prefixed.
Status Decode(int rank, std::string_view record) {
  record.remove_prefix(kError.size());
  const size_t space = record.find(' ');
  const auto code = static_cast<StatusCode>(
      std::atoi(std::string(record.substr(0, space)).c_str()));
  std::string message(record.substr(space + 1));
  const std::string prefix = "rank " + std::to_string(rank) + ": ";
  if (!message.starts_with(prefix)) message = prefix + message;
  return Status(code, message);
}

}  // namespace

Result<std::vector<std::string>> GatherValues(Communicator& group,
                                              const Result<std::string>& mine) {
  REFIT_ASSIGN_OR_RETURN(std::vector<std::string> all,
                         group.AllGather(Encode(mine)));
  // The first rank's error, preferring a cause to a kAborted consequence.
  std::optional<Status> first;
  for (size_t r = 0; r < all.size(); ++r) {
    if (!all[r].starts_with(kError)) continue;
    Status st = Decode(static_cast<int>(r), all[r]);
    if (st.code() != StatusCode::kAborted) return st;
    if (!first) first = std::move(st);
  }
  if (first) return *first;
  for (std::string& v : all) v.erase(0, kOk.size());
  return all;
}

Status AgreeOnStatus(Communicator& group, const Status& mine) {
  Result<std::string> value = mine.ok() ? Result<std::string>(std::string())
                                        : Result<std::string>(mine);
  return GatherValues(group, value).status();
}

}  // namespace refit::exec
