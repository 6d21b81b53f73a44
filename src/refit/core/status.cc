#include "refit/core/status.h"

namespace refit {

namespace {
const char* CodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kInvalidArgument:
      return "invalid argument";
    case StatusCode::kNotFound:
      return "not found";
    case StatusCode::kDataLoss:
      return "corrupt data";
    case StatusCode::kUnimplemented:
      return "unsupported";
    case StatusCode::kFailedPrecondition:
      return "mismatch";
    case StatusCode::kInternal:
      return "internal error";
    case StatusCode::kIoError:
      return "I/O error";
    case StatusCode::kDeadlineExceeded:
      return "deadline exceeded";
    case StatusCode::kAborted:
      return "aborted";
  }
  return "error";
}
}  // namespace

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(CodeName(code_)) + ": " + message_;
}

}  // namespace refit
