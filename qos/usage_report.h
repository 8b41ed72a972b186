// A snapshot of who has been served what, per user and per group, for /admin/qos and /metrics.
// Plain values copied out of the admission queue under its lock; safe to keep and format anywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tiergate::qos {

struct UserUsage {
  std::string user_id;
  std::string group;
  bool unknown = false;        // served under the group's "default" entry
  double weighted_tokens = 0;  // w_in * prompt + w_out * output, as charged
  std::int64_t prompt_tokens = 0;
  std::int64_t output_tokens = 0;
  std::uint64_t requests = 0;  // admitted so far
  std::size_t waiting = 0;
  std::size_t running = 0;
  double quota_share = 0;      // normalised quota_pct in the group (unknown users: the default share)
  double served_share = 0;     // this user's fraction of the group's weighted tokens so far
  double virtual_counter = 0;  // the fair-share counter the queue orders by
};

struct GroupUsage {
  std::string name;
  int priority = 0;
  double weighted_tokens = 0;
  std::uint64_t requests = 0;
  std::size_t waiting = 0;
  std::size_t running = 0;
  // Users whose accounts were dropped when they went idle (unknown users, DESIGN.md §3): their
  // service stays in the group's totals, they are not listed one by one.
  std::uint64_t retired_users = 0;
  // Service levels (qos::ServiceLevels fills them; zero in a report from the queue alone).
  double ttft_p50_s = 0;              // submission → first output, over the last minute's first outputs
  double ttft_p99_s = 0;
  std::uint64_t ttft_samples = 0;     // first outputs those percentiles are over
  std::uint64_t first_outputs = 0;    // since the server started
  std::uint64_t preemptions = 0;      // of this group's running requests
  std::uint64_t refused_429 = 0;      // queue full: never queued
  std::uint64_t unavailable_503 = 0;  // waited past the group's bound, or the server stopped first
};

struct UsageReport {
  std::vector<GroupUsage> groups;  // priority order
  std::vector<UserUsage> users;    // by group, then user id
};

std::string to_json(const UsageReport& report);
// A fixed-width table for terminals and logs.
std::string to_text(const UsageReport& report);

}  // namespace tiergate::qos
