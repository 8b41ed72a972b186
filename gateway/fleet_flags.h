// `serve`'s fleet flags (--redis-url and friends) and what they build: the fleet sync of the
// admission queue and the Redis store of interactive sessions. Without --redis-url: nothing, and
// the replica runs alone as before. Kept apart from serve_command.cpp so that the command's own
// flag handling stays short.
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "gateway/cli_args.h"
#include "gateway/fleet_sync.h"
#include "gateway/redis_session_store.h"

namespace tiergate::gateway {

extern const std::set<std::string> kFleetFlags;
extern const char* const kFleetUsage;

struct Fleet {
  std::unique_ptr<FleetSync> sync;
  std::shared_ptr<RedisSessionStore> sessions;

  // Before the server goes: the last charges reach Redis, queued session writes are done.
  void stop() {
    if (sync) sync->stop();
    if (sessions) sessions->stop();
  }
};

// The fleet's options, nullopt without --redis-url; throws CliError for a bad value (the message
// names the flag). Called before anything slow starts, so that a typo fails at once; it also tries
// Redis once (bounded): a wrong password or a failed TLS handshake is a CliError naming
// --redis-url (never the password), a Redis that does not answer yet only a line on stderr.
std::optional<FleetSyncOptions> fleet_options(const CliArgs& args);
// Starts the sync thread and the session store (nothing for nullopt).
Fleet start_fleet(const std::optional<FleetSyncOptions>& options, qos::AdmissionQueue& queue);

}  // namespace tiergate::gateway
