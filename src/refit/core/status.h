// Status and Result<T>: the error type of every refit API (no exceptions cross
// the API).
#ifndef REFIT_CORE_STATUS_H_
#define REFIT_CORE_STATUS_H_

#include <string>
#include <utility>
#include <variant>

namespace refit {

/// Error categories. The CLI maps every non-OK code to exit status 2.
enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     ///< bad user input: layout string, option, config field
  kNotFound,            ///< a file or tensor that must exist does not
  kDataLoss,            ///< a corrupt or truncated file
  kUnimplemented,       ///< an architecture or feature refit does not support
  kFailedPrecondition,  ///< inputs that do not fit together (checkpoint vs
                        ///< config)
  kInternal,            ///< a broken invariant inside refit (a bug)
  kIoError,             ///< the operating system refused a read or write
  kDeadlineExceeded,    ///< a peer made no progress for the timeout
  kAborted,             ///< a peer failed first; its own error says why
};

/// An OK status or an error code with a one-line message that names the
/// offending file, tensor, rank or field.
class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message)
      : code_(code), message_(std::move(message)) {}

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  /// "<code name>: <message>", or "OK".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status OkStatus() { return Status(); }
inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) {
  return {StatusCode::kNotFound, std::move(m)};
}
inline Status DataLoss(std::string m) {
  return {StatusCode::kDataLoss, std::move(m)};
}
inline Status Unimplemented(std::string m) {
  return {StatusCode::kUnimplemented, std::move(m)};
}
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status Internal(std::string m) {
  return {StatusCode::kInternal, std::move(m)};
}
inline Status IoError(std::string m) {
  return {StatusCode::kIoError, std::move(m)};
}
inline Status DeadlineExceeded(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
inline Status Aborted(std::string m) {
  return {StatusCode::kAborted, std::move(m)};
}

/// Either a value of type T or a non-OK Status.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT
  Result(Status status) : v_(std::move(status)) {}  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  /// The error; OK when a value is held.
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace refit

#define REFIT_CONCAT_INNER_(a, b) a##b
#define REFIT_CONCAT_(a, b) REFIT_CONCAT_INNER_(a, b)

/// Returns the Status of `expr` from the enclosing function if it is not OK.
#define REFIT_RETURN_IF_ERROR(expr)        \
  do {                                     \
    ::refit::Status refit_st_ = (expr);    \
    if (!refit_st_.ok()) return refit_st_; \
  } while (0)

/// Declares/assigns `lhs` from a Result expression or returns its error.
#define REFIT_ASSIGN_OR_RETURN(lhs, expr) \
  REFIT_ASSIGN_OR_RETURN_IMPL_(REFIT_CONCAT_(refit_res_, __LINE__), lhs, expr)
#define REFIT_ASSIGN_OR_RETURN_IMPL_(res, lhs, expr) \
  auto res = (expr);                                 \
  if (!res.ok()) return res.status();                \
  lhs = std::move(res).value()

#endif  // REFIT_CORE_STATUS_H_
