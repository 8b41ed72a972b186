#include "gateway/admin_qos_report.h"

#include <chrono>

#include "qos/config_writer.h"
#include "qos/usage_report.h"

namespace tiergate::gateway {

std::string admin_qos_report(EngineService& service, const ConfigSource& source, const std::string& reloads,
                             const std::string& fleet_json) {
  const auto config = service.queue().config();
  qos::UsageReport usage = service.queue().usage();
  service.service_levels().fill(usage, qos::Clock::now());
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  return "{\"config\": " + qos::to_json(*config) + ", \"config_source\": {\"path\": " + qos::json_string(source.path) +
         ", \"loaded_at_unix_ms\": " + std::to_string(source.loaded_at_unix_ms) +
         ", \"last_reload_error\": " + qos::json_string(source.last_reload_error) +
         "}, \"server_time_unix_ms\": " + std::to_string(now_ms) + ", \"usage\": " + qos::to_json(usage) +
         ", \"reload\": " + reloads + (fleet_json.empty() ? "" : ", \"fleet\": " + fleet_json) + "}";
}

}  // namespace tiergate::gateway
