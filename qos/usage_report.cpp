#include "qos/usage_report.h"

#include <cstdio>

#include "qos/config_writer.h"

namespace tiergate::qos {

std::string to_json(const UsageReport& report) {
  std::string out = "{\"groups\": [";
  for (std::size_t i = 0; i < report.groups.size(); ++i) {
    const GroupUsage& g = report.groups[i];
    out += (i ? ", " : "") + std::string("{\"name\": ") + json_string(g.name) +
           ", \"priority\": " + std::to_string(g.priority) +
           ", \"weighted_tokens\": " + json_number(g.weighted_tokens) +
           ", \"requests\": " + std::to_string(g.requests) +
           ", \"waiting\": " + std::to_string(g.waiting) +
           ", \"running\": " + std::to_string(g.running) +
           ", \"retired_users\": " + std::to_string(g.retired_users) +
           ", \"ttft_p50_s\": " + json_number(g.ttft_p50_s) + ", \"ttft_p99_s\": " + json_number(g.ttft_p99_s) +
           ", \"ttft_samples\": " + std::to_string(g.ttft_samples) +
           ", \"first_outputs\": " + std::to_string(g.first_outputs) +
           ", \"preemptions\": " + std::to_string(g.preemptions) +
           ", \"refused_429\": " + std::to_string(g.refused_429) +
           ", \"unavailable_503\": " + std::to_string(g.unavailable_503) + "}";
  }
  out += "], \"users\": [";
  for (std::size_t i = 0; i < report.users.size(); ++i) {
    const UserUsage& u = report.users[i];
    out += (i ? ", " : "") + std::string("{\"user_id\": ") + json_string(u.user_id) +
           ", \"group\": " + json_string(u.group) + ", \"unknown\": " + (u.unknown ? "true" : "false") +
           ", \"weighted_tokens\": " + json_number(u.weighted_tokens) +
           ", \"prompt_tokens\": " + std::to_string(u.prompt_tokens) +
           ", \"output_tokens\": " + std::to_string(u.output_tokens) +
           ", \"requests\": " + std::to_string(u.requests) +
           ", \"waiting\": " + std::to_string(u.waiting) +
           ", \"running\": " + std::to_string(u.running) +
           ", \"quota_share\": " + json_number(u.quota_share) +
           ", \"served_share\": " + json_number(u.served_share) + "}";
  }
  return out + "]}";
}

std::string to_text(const UsageReport& report) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-24s %-10s %14s %9s %8s %8s %8s %8s\n", "user", "group",
                "weighted_tok", "requests", "waiting", "running", "quota%", "served%");
  out += line;
  for (const UserUsage& u : report.users) {
    const std::string name = u.unknown ? u.user_id + " (default)" : u.user_id;
    std::snprintf(line, sizeof line, "%-24s %-10s %14.0f %9llu %8zu %8zu %8.1f %8.1f\n",
                  name.c_str(), u.group.c_str(), u.weighted_tokens,
                  static_cast<unsigned long long>(u.requests), u.waiting, u.running,
                  100 * u.quota_share, 100 * u.served_share);
    out += line;
  }
  return out;
}

}  // namespace tiergate::qos
