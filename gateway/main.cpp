// The tiergate executable: one binary, sub-commands in the style of `git`.
#include <iostream>
#include <string>
#include <vector>

#include "gateway/bench_engine_command.h"
#include "gateway/generate_command.h"
#include "gateway/qos_check_command.h"
#include "gateway/serve_command.h"

namespace {

constexpr const char* kUsage =
    "usage: tiergate <command> [args]\n"
    "\n"
    "commands:\n"
    "  serve [MODEL]     the HTTPS API server (OpenAI + LMDeploy-QoS routes)\n"
    "  keys add --user ID [--admin]   create an API key (printed once, stored hashed)\n"
    "  generate          run the engine on one prompt and stream the text (see generate --help)\n"
    "  bench-engine      prefill/decode tokens/s at batch 1, 4, 16, 64 and KV-cache waste\n"
    "  qos check FILE    validate a qos_config.json and print its groups, users and shares\n"
    "  version           print the version\n";

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "version" || args[0] == "--version") {
    std::cout << "tiergate " << TIERGATE_VERSION << "\n";
    return 0;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "serve") return tiergate::gateway::run_serve(rest, std::cout, std::cerr);
  if (args[0] == "keys") return tiergate::gateway::run_keys(rest, std::cout, std::cerr);
  if (args[0] == "generate") return tiergate::gateway::run_generate(rest, std::cout, std::cerr);
  if (args[0] == "bench-engine") return tiergate::gateway::run_bench_engine(rest, std::cout, std::cerr);
  if (args.size() >= 2 && args[0] == "qos" && args[1] == "check") {
    return tiergate::gateway::run_qos_check({args.begin() + 2, args.end()}, std::cout, std::cerr);
  }
  std::cerr << "tiergate: unknown command '" << args[0] << "'\n\n" << kUsage;
  return 2;
}
