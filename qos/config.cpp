#include "qos/config.h"

#include <utility>

#include "qos/check.h"

namespace tiergate::qos {

Config::Config(bool enable_user_qos, std::vector<Group> groups,
               std::optional<std::string> default_group, TokenWeights weights)
    : enable_user_qos_(enable_user_qos),
      groups_(std::move(groups)),
      default_group_(std::move(default_group)),
      weights_(weights),
      default_share_(groups_.size(), 0.0) {
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    double sum = 0;
    for (const UserQuota& user : groups_[g].users) sum += user.quota_pct;
    for (const UserQuota& user : groups_[g].users) {
      const double share = sum > 0 ? user.quota_pct / sum : 0.0;
      if (user.id == kDefaultUserId) {
        default_share_[g] = share;
        continue;
      }
      // The parser rejects duplicates with a message; reaching here with one is a bug.
      const bool inserted = known_.emplace(user.id, Resolution{g, false, share}).second;
      QOS_CHECK(inserted);
    }
  }
  if (default_group_) {
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      if (groups_[g].name == *default_group_) unknown_group_ = g;
    }
    QOS_CHECK(unknown_group_.has_value());
  } else {
    for (std::size_t g = groups_.size(); g-- > 0;) {
      if (default_share_[g] > 0) {
        unknown_group_ = g;
        break;
      }
    }
  }
}

std::optional<Resolution> Config::resolve(std::string_view user_id) const {
  if (!enable_user_qos_) return Resolution{0, false, 1.0};
  if (user_id != kDefaultUserId) {
    if (auto it = known_.find(std::string(user_id)); it != known_.end()) return it->second;
  }
  if (!unknown_group_) return std::nullopt;
  return Resolution{*unknown_group_, true, default_share_[*unknown_group_]};
}

double Config::normalised_share(std::size_t group, std::string_view id) const {
  QOS_CHECK(group < groups_.size());
  if (id == kDefaultUserId) return default_share_[group];
  auto it = known_.find(std::string(id));
  return it != known_.end() && it->second.group == group ? it->second.share : 0.0;
}

bool Config::operator==(const Config& other) const {
  return enable_user_qos_ == other.enable_user_qos_ && groups_ == other.groups_ &&
         default_group_ == other.default_group_ && weights_ == other.weights_;
}

}  // namespace tiergate::qos
