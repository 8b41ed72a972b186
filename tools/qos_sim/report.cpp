#include "tools/qos_sim/report.h"

#include <cstdio>

namespace tiergate::qos_sim {

std::string side_by_side(const std::vector<SimResult>& results, const qos::Config& config) {
  std::string out;
  char cell[160];
  if (results.empty()) return out;
  const SimResult& first = results.front();

  std::snprintf(cell, sizeof cell, "%-14s %-9s %7s", "user", "group", "quota%");
  out += cell;
  for (const SimResult& r : results) {
    std::snprintf(cell, sizeof cell, " | %-26s", r.policy.c_str());
    out += cell;
  }
  out += "\n";
  std::snprintf(cell, sizeof cell, "%-14s %-9s %7s", "", "", "");
  out += cell;
  for (std::size_t i = 0; i < results.size(); ++i) out += " | served%  p50_s   p99_s   ";
  out += "\n";
  for (std::size_t u = 0; u < first.users.size(); ++u) {
    const UserStats& user = first.users[u];
    const std::string group = config.groups().empty() ? "all" : config.groups()[user.group].name;
    std::snprintf(cell, sizeof cell, "%-14.14s %-9.9s %7.1f", user.user.c_str(), group.c_str(),
                  100 * user.quota_share);
    out += cell;
    for (const SimResult& r : results) {
      const UserStats& s = r.users[u];
      std::snprintf(cell, sizeof cell, " | %7.1f %7.2f %7.2f%s", 100 * s.served_share,
                    percentile(s.queue_delays_s, 50), percentile(s.queue_delays_s, 99),
                    s.refused ? "*" : " ");
      out += cell;
    }
    out += "\n";
  }
  out += "\n";
  std::snprintf(cell, sizeof cell, "%-32s", "group");
  out += cell;
  for (std::size_t i = 0; i < results.size(); ++i) out += " | Jain  maxdev    p99_s      ";
  out += "\n";
  for (std::size_t g = 0; g < first.groups.size(); ++g) {
    if (first.groups[g].queue_delays_s.empty()) continue;
    std::snprintf(cell, sizeof cell, "%-32s", first.groups[g].name.c_str());
    out += cell;
    for (const SimResult& r : results) {
      const GroupStats& s = r.groups[g];
      std::snprintf(cell, sizeof cell, " | %5.3f %8.0f %7.2f     ", s.jain_index, s.max_pair_deviation,
                    percentile(s.queue_delays_s, 99));
      out += cell;
    }
    out += "\n";
  }
  out += "\nmakespan_s";
  for (const SimResult& r : results) {
    std::snprintf(cell, sizeof cell, "  %s %.1f", r.policy.c_str(), r.makespan_s);
    out += cell;
  }
  out += "\n(served% = share of the group's weighted tokens served up to the last arrival; maxdev = max |dW_a/s_a - dW_b/s_b| over "
         "co-backlogged intervals, in share-normalised weighted tokens; * = some requests refused)\n";
  return out;
}

}  // namespace tiergate::qos_sim
