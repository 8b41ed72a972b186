// The body of GET /admin/qos: the QoS config in force, where it came from and when it was loaded,
// the usage report (per group and per user: service, shares, queue depth, running, TTFT,
// preemptions, 429s and 503s), the outcome of the reloadable files' last reloads, and for a replica
// of a fleet the fleet-wide usage from Redis. Read by operators' scripts, qosbench and the
// dashboard page.
#pragma once

#include <cstdint>
#include <string>

#include "gateway/engine_service.h"

namespace tiergate::gateway {

struct ConfigSource {
  std::string path;
  std::int64_t loaded_at_unix_ms = 0;  // when the config in force was read
  std::string last_reload_error;       // of the latest reload attempt ("" after a good one)
};

// `reloads`: a JSON object, file → {path, ok, error, reloads, failures} (the "reload" member).
// `fleet_json`: the "fleet" object (FleetSync::usage_json), or empty for a replica running alone.
std::string admin_qos_report(EngineService& service, const ConfigSource& source, const std::string& reloads,
                             const std::string& fleet_json = {});

}  // namespace tiergate::gateway
