// The QoS configuration in force: priority groups, their users and quotas, token cost weights and
// per-group queue bounds. Built once by config_parser (the only place that validates and may fail)
// and immutable afterwards; readers share it as std::shared_ptr<const Config> and a reload swaps the
// pointer. Safe to read from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tiergate::qos {

// The user id that stands for "every user not listed anywhere" inside a group (LMDeploy's format).
inline constexpr std::string_view kDefaultUserId = "default";

struct UserQuota {
  std::string id;
  double quota_pct = 0;  // as written in the file; 0 marks a scavenger

  bool operator==(const UserQuota&) const = default;
};

// Extension: bounds on a group's queue (unset means unbounded) and its isolation from the groups
// below it.
struct GroupLimits {
  std::optional<std::size_t> max_queued;        // full queue → 429
  std::optional<double> max_queue_wait_s;       // waited longer → 503
  double retry_after_s = 1;                     // advertised in Retry-After on a 429
  // While a request of this group is on its way to its first token, each engine step gives the
  // strictly lower groups together at most this many tokens (decode + prefill); 0 pauses them for
  // the length of the prefill, so the first token comes as on an idle server.
  std::int64_t lower_groups_step_tokens = 0;

  bool operator==(const GroupLimits&) const = default;
};

struct Group {
  std::string name;
  std::vector<UserQuota> users;  // file order; may hold one entry with id "default"
  GroupLimits limits;

  bool operator==(const Group&) const = default;
};

// Weighted-token cost of service (DESIGN.md §3): w_in per prompt token, w_out per generated token.
struct TokenWeights {
  double input = 1;
  double output = 2;

  bool operator==(const TokenWeights&) const = default;
};

// Where a user id lands: its group and the share its service is measured against.
struct Resolution {
  std::size_t group = 0;    // index into Config::groups(); 0 is the highest priority
  bool unknown = false;     // not listed: accounted as its own user inside the group's default share
  double share = 0;         // normalised quota in the group (for unknown users: the whole default
                            // share, which the admission queue splits among the active unknown users)
};

class Config {
 public:
  Config(bool enable_user_qos, std::vector<Group> groups, std::optional<std::string> default_group,
         TokenWeights weights);

  bool enable_user_qos() const { return enable_user_qos_; }
  const std::vector<Group>& groups() const { return groups_; }
  const std::optional<std::string>& default_group() const { return default_group_; }
  const TokenWeights& weights() const { return weights_; }

  // The group unknown users fall into, if any: `default_group` when given, otherwise the
  // lowest-priority group whose "default" entry has quota_pct > 0.
  std::optional<std::size_t> unknown_user_group() const { return unknown_group_; }

  // user id → group and share; nullopt when the user is not configured and no group takes
  // unknown users (the gateway answers 403). With QoS disabled every user resolves to group 0.
  std::optional<Resolution> resolve(std::string_view user_id) const;

  // Normalised share of an entry: quota_pct / sum of the group's quota_pct (0 if the sum is 0).
  double normalised_share(std::size_t group, std::string_view id) const;

  bool operator==(const Config& other) const;

 private:
  bool enable_user_qos_;
  std::vector<Group> groups_;
  std::optional<std::string> default_group_;
  TokenWeights weights_;
  std::optional<std::size_t> unknown_group_;
  // id → (group, normalised share); "default" entries are kept per group in default_share_.
  std::unordered_map<std::string, Resolution> known_;
  std::vector<double> default_share_;  // per group; 0 where there is no default entry
};

}  // namespace tiergate::qos
