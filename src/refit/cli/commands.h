// Subcommands of the `refit` CLI. Each registers its options on the app and
// returns the process exit code when run: 0 success, 1 a refit that is not
// bit-exact, 2 bad input or any other error (one line on stderr).
#ifndef REFIT_CLI_COMMANDS_H_
#define REFIT_CLI_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "refit/core/model_spec.h"
#include "refit/core/status.h"

namespace refit::cli {

using Command = std::function<int()>;

Command AddBenchCommand(CLI::App& app);
Command AddInspectCommand(CLI::App& app);
Command AddRunCommand(CLI::App& app);
Command AddSynthCommand(CLI::App& app);

/// The model spec of a checkpoint directory or a config.json path.
Result<ModelSpec> LoadModelSpec(const std::string& path,
                                const ModelSpecOptions& options = {});

/// A CLI11 check that an option's value is a number > 0 (or >= 0 when
/// `allow_zero`), with a short message.
CLI::Validator Positive(bool allow_zero = false);

/// Prints "refit: <message>" on stderr and returns 2.
int Fail(const Status& status);

}  // namespace refit::cli

#endif  // REFIT_CLI_COMMANDS_H_
