#include "tools/qos_sim/lmdeploy_policy.h"

#include <limits>

namespace tiergate::qos_sim {
namespace {
constexpr double kWindowS = 60;
constexpr std::size_t kUnknownGroupIndex = 2;  // LMDeploy: user_group_list[2] if there are >= 3
}  // namespace

LmdeployPolicy::LmdeployPolicy(std::shared_ptr<const qos::Config> config) : config_(std::move(config)) {
  for (const qos::Group& group : config_->groups()) {
    double sum = 0;
    for (const qos::UserQuota& user : group.users) sum += user.quota_pct;
    std::vector<UserQueue> queues;
    for (const qos::UserQuota& user : group.users) {
      where_[user.id == qos::kDefaultUserId ? "" : user.id] = {groups_.size(), queues.size()};
      queues.push_back({user.id, sum > 0 ? user.quota_pct / sum : 0.0, {}});
    }
    groups_.push_back(std::move(queues));
  }
  where_.erase("");
}

bool LmdeployPolicy::enqueue(const SimRequest& request, double) {
  if (auto it = where_.find(request.user); it != where_.end()) {
    groups_[it->second.first][it->second.second].waiting.push_back(request);
    return true;
  }
  if (groups_.size() <= kUnknownGroupIndex) return false;
  for (UserQueue& queue : groups_[kUnknownGroupIndex]) {
    if (queue.id == qos::kDefaultUserId) {
      queue.waiting.push_back(request);
      return true;
    }
  }
  return false;  // LMDeploy would raise a KeyError here
}

std::size_t LmdeployPolicy::requests_in_window(const std::string& user, std::size_t group) const {
  std::size_t count = 0;
  for (const Usage& u : window_) {
    if (user.empty() ? u.group == group : u.user == user) ++count;
  }
  return count;
}

std::optional<std::uint64_t> LmdeployPolicy::next(double now_s) {
  while (!window_.empty() && window_.front().time_s <= now_s - kWindowS) window_.pop_front();
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    UserQueue* chosen = nullptr;
    double best = std::numeric_limits<double>::infinity();
    const double group_usage = static_cast<double>(requests_in_window("", g));
    for (UserQueue& queue : groups_[g]) {
      if (queue.waiting.empty()) continue;
      const double actual = group_usage > 0
                                ? static_cast<double>(requests_in_window(queue.id, g)) / group_usage
                                : 0.0;
      if (queue.due_share <= 0) {
        if (!chosen) chosen = &queue;  // only when no positive-quota queue is chosen
        continue;
      }
      const double usage = actual / queue.due_share;
      if (usage == 0) {
        chosen = &queue;
        break;
      }
      if (usage < best) {
        best = usage;
        chosen = &queue;
      }
    }
    if (!chosen) continue;
    SimRequest request = std::move(chosen->waiting.front());
    chosen->waiting.pop_front();
    window_.push_back({now_s, request.user, g});
    return request.id;
  }
  return std::nullopt;
}

}  // namespace tiergate::qos_sim
