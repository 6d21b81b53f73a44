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
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return refit::cli::Fail(
        refit::InvalidArgument(e.what() + std::string(" (see --help)")));
  }
  for (auto& [name, run] : commands) {
    if (app.got_subcommand(name)) return run();
  }
  return 2;
}
