#include "gateway/fleet_flags.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace tiergate::gateway {

const std::set<std::string> kFleetFlags = {"--redis-url",    "--redis-sync-ms", "--redis-timeout-ms",
                                           "--redis-prefix", "--replica-id",    "--redis-tls-ca-file"};

const char* const kFleetUsage =
    "       [--redis-url redis[s]://[:PASSWORD@]HOST:6379/0 (a fleet: fair share and sessions shared through\n"
    "        Redis; rediss:// is TLS; the password may come from TIERGATE_REDIS_PASSWORD instead)]\n"
    "       [--redis-tls-ca-file CA.pem (rediss://: the CA of Redis's certificate; default the system's)]\n"
    "       [--redis-sync-ms 50] [--redis-timeout-ms 200] [--redis-prefix tiergate] [--replica-id ID]\n";

namespace {

// A Redis that is down may come up later (the replica serves on local counters meanwhile), but one
// that turns us away will go on doing so: that is a flag to fix, said now rather than as a stream
// of failed syncs.
void check_redis(const FleetSyncOptions& options) {
  RedisConnection probe(options.url, std::max<std::chrono::milliseconds>(options.timeout, std::chrono::seconds(2)));
  const RedisResult r = probe.command({"PING"});
  const char* const password_hint =
      " (the password comes from --redis-url redis[s]://:PASSWORD@host or from TIERGATE_REDIS_PASSWORD)";
  if (r.failure == RedisResult::Failure::kNone) {
    if (r.replies[0].type != RedisReply::Type::kError) return;
    const bool auth = r.replies[0].str.rfind("NOAUTH", 0) == 0;
    throw CliError("--redis-url " + options.url.describe() + ": Redis refused PING: " + r.replies[0].str +
                   (auth ? password_hint : ""));
  }
  if (r.refused) {
    const bool auth = r.error.find("AUTH refused") != std::string::npos;
    throw CliError("--redis-url " + r.error + (auth ? password_hint : ""));
  }
  std::fprintf(stderr, "tiergate: fleet: %s; serving on local counters until Redis answers\n", r.error.c_str());
}

}  // namespace

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
  if (options.url.password.empty()) {
    if (const char* password = std::getenv("TIERGATE_REDIS_PASSWORD"); password && *password) {
      options.url.password = password;
    }
  }
  if (args.has("--redis-tls-ca-file")) {
    if (!options.url.tls) throw CliError("--redis-tls-ca-file needs a rediss:// --redis-url (TLS)");
    options.url.tls_ca_file = args.get("--redis-tls-ca-file", "");
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
  check_redis(options);
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
