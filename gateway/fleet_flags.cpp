#include "gateway/fleet_flags.h"

namespace tiergate::gateway {

const std::set<std::string> kFleetFlags = {"--redis-url", "--redis-sync-ms", "--redis-timeout-ms", "--redis-prefix",
                                           "--replica-id"};

const char* const kFleetUsage =
    "       [--redis-url redis://HOST:6379/0 (a fleet: fair share and sessions shared through Redis)]\n"
    "       [--redis-sync-ms 50] [--redis-timeout-ms 200] [--redis-prefix tiergate] [--replica-id ID]\n";

std::optional<FleetSyncOptions> fleet_options(const CliArgs& args) {
  if (!args.has("--redis-url")) {
    for (const std::string& flag : kFleetFlags) {
      if (args.has(flag)) throw CliError(flag + " needs --redis-url");
    }
    return std::nullopt;
  }
  FleetSyncOptions options;
  try {
    options.url = RedisUrl::parse(args.get("--redis-url", ""));
  } catch (const std::invalid_argument& e) {
    throw CliError(e.what());
  }
  const std::size_t interval = args.count("--redis-sync-ms", 50);
  const std::size_t timeout = args.count("--redis-timeout-ms", 200);
  if (interval < 1 || interval > 60000) throw CliError("--redis-sync-ms must be 1..60000, got " + std::to_string(interval));
  if (timeout < 1 || timeout > 60000) throw CliError("--redis-timeout-ms must be 1..60000, got " + std::to_string(timeout));
  options.interval = std::chrono::milliseconds(interval);
  options.timeout = std::chrono::milliseconds(timeout);
  options.replica_id = args.get("--replica-id", "");
  options.store.prefix = args.get("--redis-prefix", "tiergate");
  if (options.store.prefix.empty()) throw CliError("--redis-prefix must not be empty");
  return options;
}

Fleet start_fleet(const std::optional<FleetSyncOptions>& options, qos::AdmissionQueue& queue) {
  Fleet fleet;
  if (!options) return fleet;
  fleet.sessions = std::make_shared<RedisSessionStore>(options->url, options->timeout, options->store.prefix);
  fleet.sync = std::make_unique<FleetSync>(*options, queue);
  return fleet;
}

}  // namespace tiergate::gateway
