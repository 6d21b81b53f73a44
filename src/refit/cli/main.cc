// refit: moves the weights of an LLM from one Megatron parallel layout into
// another. See README.md.
#include <CLI/CLI.hpp>
#include <map>
#include <string>

#include "refit/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"refit: reshard LLM weights between Megatron parallel layouts"};
  app.require_subcommand(1);
  std::map<std::string, refit::cli::Command> commands = {
      {"bench", refit::cli::AddBenchCommand(app)},
      {"inspect", refit::cli::AddInspectCommand(app)},
      {"run", refit::cli::AddRunCommand(app)},
      {"synth", refit::cli::AddSynthCommand(app)},
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  for (auto& [name, run] : commands) {
    if (app.got_subcommand(name)) return run();
  }
  return 2;
}
