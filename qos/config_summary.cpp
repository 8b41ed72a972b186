#include "qos/config_summary.h"

#include <cstdio>

namespace tiergate::qos {

std::string summarize(const Config& config) {
  std::string out;
  char line[256];
  if (!config.enable_user_qos()) {
    out += "QoS disabled (enable_user_qos: false): one FCFS queue for every user.\n";
    return out;
  }
  const auto& groups = config.groups();
  std::snprintf(line, sizeof line, "QoS enabled: %zu groups, highest priority first.\n", groups.size());
  out += line;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const Group& group = groups[g];
    std::snprintf(line, sizeof line, "\n[%zu] %s\n", g + 1, group.name.c_str());
    out += line;
    if (group.users.empty()) out += "    (no users)\n";
    for (const UserQuota& user : group.users) {
      const double share = config.normalised_share(g, user.id);
      const char* note = user.quota_pct == 0 ? "  scavenger: served only when no one else waits"
                         : user.id == kDefaultUserId ? "  split evenly among active unknown users"
                                                     : "";
      std::snprintf(line, sizeof line, "    %-24s quota_pct %7.2f  share %6.2f%%%s\n",
                    user.id.c_str(), user.quota_pct, 100 * share, note);
      out += line;
    }
    const GroupLimits& limits = group.limits;
    if (config.enable_user_qos() && g + 1 < groups.size()) {
      if (limits.lower_groups_step_tokens == 0) {
        out += "    isolation: while one of its requests waits for its first token, lower groups pause\n";
      } else {
        std::snprintf(line, sizeof line,
                      "    isolation: while one of its requests waits for its first token, lower groups get at "
                      "most %lld tokens a step\n",
                      static_cast<long long>(limits.lower_groups_step_tokens));
        out += line;
      }
    }
    if (limits != GroupLimits{}) {
      std::string bounds = "    limits:";
      if (limits.max_queued) bounds += " max_queued " + std::to_string(*limits.max_queued);
      if (limits.max_queue_wait_s) {
        std::snprintf(line, sizeof line, " max_queue_wait %.3gs", *limits.max_queue_wait_s);
        bounds += line;
      }
      std::snprintf(line, sizeof line, " retry_after %.3gs\n", limits.retry_after_s);
      out += bounds + line;
    }
  }
  out += "\n";
  if (auto g = config.unknown_user_group()) {
    std::snprintf(line, sizeof line, "Unknown users: group %s%s.\n", groups[*g].name.c_str(),
                  config.default_group() ? " (default_group)" : " (lowest group with a default share)");
  } else {
    std::snprintf(line, sizeof line, "Unknown users: refused (403), no group takes them.\n");
  }
  out += line;
  std::snprintf(line, sizeof line, "Token weights: input %g, output %g per token.\n",
                config.weights().input, config.weights().output);
  out += line;
  return out;
}

}  // namespace tiergate::qos
