// The Redis side of fleet-wide fair share: one scripted call (EVALSHA) per sync folds a replica's
// qos::FleetReport into the shared counters and answers with the fleet's (the semantics are
// qos::FleetLedger's; tests/gateway/fleet_store_test.cpp holds the script to them), and a read of
// the fleet-wide usage for /admin/qos. Keys live under `prefix` on one Redis (standalone, not
// Cluster: the script computes its keys); the script forgets idle users after user_ttl, and no key
// of it carries a Redis TTL (so that volatile-lru eviction never takes a counter). Owned by the
// FleetSync thread, which alone calls it; failures are values (RedisResult::Failure).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "gateway/redis_connection.h"
#include "qos/config.h"
#include "qos/fleet_counters.h"

namespace tiergate::gateway {

struct FleetStoreOptions {
  std::string prefix = "tiergate";
  std::chrono::seconds user_ttl{3600};  // a user idle fleet-wide this long is forgotten (its debt too)
  double lapse_s = 5;                   // a replica silent this long no longer counts (floors, loads, registry)
  double aggregate_every_s = 0.1;       // fleet-wide minima and sums recomputed at most this often
};

struct FleetAnswer {
  RedisResult::Failure failure = RedisResult::Failure::kNone;
  std::string error;
  qos::FleetUpdate update;
  std::size_t replicas = 0;         // replicas heard from within lapse_s
  std::size_t config_versions = 0;  // distinct config fingerprints among them (> 1: skew)
};

struct FleetUserUsage {
  std::string user_id;
  qos::FleetServed served;
};

struct FleetGroupUsage {
  std::string name;
  qos::FleetServed served;  // every user's, unknown users' included
  std::vector<FleetUserUsage> users;  // the users the config lists
};

struct FleetReplicaInfo {
  std::string id;
  std::string config_fingerprint;
  double age_s = 0;  // since its last sync
};

struct FleetUsage {
  RedisResult::Failure failure = RedisResult::Failure::kNone;
  std::string error;
  std::vector<FleetGroupUsage> groups;
  std::vector<FleetReplicaInfo> replicas;
};

class FleetStore {
 public:
  FleetStore(RedisConnection& redis, FleetStoreOptions options);

  FleetAnswer sync(const std::string& replica, std::uint64_t seq, const qos::FleetReport& report,
                   const std::string& config_fingerprint);
  FleetUsage read_usage(const qos::Config& config);

 private:
  RedisConnection& redis_;
  FleetStoreOptions options_;
};

// A short stable digest of the config in force (its canonical JSON), to tell replicas' configs apart.
std::string config_fingerprint(const qos::Config& config);

}  // namespace tiergate::gateway
