#include "tools/qos_sim/simulator.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>

namespace tiergate::qos_sim {
namespace {

// Forwards to the policy under test and tallies the weighted tokens the engine charges.
class MeteredPolicy : public Policy {
 public:
  MeteredPolicy(Policy& inner, const qos::TokenWeights& weights,
                std::unordered_map<std::string, double>& served)
      : inner_(inner), weights_(weights), served_(served) {}
  std::string name() const override { return inner_.name(); }
  bool enqueue(const SimRequest& r, double now_s) override { return inner_.enqueue(r, now_s); }
  std::optional<std::uint64_t> next(double now_s) override { return inner_.next(now_s); }
  void plan(std::span<const qos::RunningWork> running, const qos::StepCapacity& capacity, double now_s,
            qos::StepPlan& plan) override {
    inner_.plan(running, capacity, now_s, plan);
  }
  void charge(const std::string& user, std::int64_t prompt, std::int64_t output) override {
    served_[user] += weights_.input * static_cast<double>(prompt) + weights_.output * static_cast<double>(output);
    inner_.charge(user, prompt, output);
  }
  void finish(std::uint64_t id) override { inner_.finish(id); }

 private:
  Policy& inner_;
  const qos::TokenWeights& weights_;
  std::unordered_map<std::string, double>& served_;
};

}  // namespace

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(p / 100.0 * static_cast<double>(values.size()));
  const std::size_t index = static_cast<std::size_t>(std::max(1.0, rank)) - 1;
  return values[std::min(index, values.size() - 1)];
}

SimResult simulate(const std::vector<SimRequest>& workload, Policy& policy, const EngineShape& shape,
                   const qos::Config& config) {
  SimResult result;
  result.policy = policy.name();
  const std::size_t group_count = std::max<std::size_t>(1, config.groups().size());
  for (std::size_t g = 0; g < group_count; ++g) {
    result.groups.push_back({config.groups().empty() ? "all" : config.groups()[g].name, 0, 1, 0, {}});
  }

  // Users in first-arrival order, with the share their service is judged against.
  std::unordered_map<std::string, std::size_t> user_index;
  std::map<std::size_t, std::size_t> unknown_per_group;
  for (const SimRequest& r : workload) {
    if (user_index.count(r.user)) continue;
    user_index[r.user] = result.users.size();
    UserStats stats;
    stats.user = r.user;
    if (auto resolution = config.resolve(r.user)) {
      stats.group = resolution->group;
      stats.quota_share = resolution->share;
      if (resolution->unknown) ++unknown_per_group[resolution->group];
    }
    result.users.push_back(std::move(stats));
  }
  for (UserStats& u : result.users) {
    auto resolution = config.resolve(u.user);
    if (resolution && resolution->unknown) {
      u.quota_share /= static_cast<double>(unknown_per_group[resolution->group]);
    }
  }

  std::unordered_map<std::uint64_t, SimRequest> by_id;
  for (const SimRequest& r : workload) by_id.emplace(r.id, r);
  std::unordered_map<std::string, double> served;
  MeteredPolicy metered(policy, config.weights(), served);
  EngineModel engine(shape);

  std::vector<std::size_t> outstanding(result.users.size(), 0);
  // Co-backlogged pairs (a < b) → normalised service of each when the pair formed.
  std::map<std::pair<std::size_t, std::size_t>, std::pair<double, double>> pairs;
  auto normalised = [&](std::size_t u) {
    return served[result.users[u].user] / result.users[u].quota_share;
  };
  // Pairs are only judged where both shares are fixed: two listed users, or two unknown users
  // (whose split of the default share changes with how many are active, but equally for both).
  std::vector<bool> unknown(result.users.size(), false);
  for (std::size_t u = 0; u < result.users.size(); ++u) {
    auto resolution = config.resolve(result.users[u].user);
    unknown[u] = resolution && resolution->unknown;
  }
  auto become_backlogged = [&](std::size_t u) {
    if (result.users[u].quota_share <= 0) return;
    for (std::size_t v = 0; v < result.users.size(); ++v) {
      if (v == u || outstanding[v] == 0 || result.users[v].group != result.users[u].group ||
          result.users[v].quota_share <= 0 || unknown[v] != unknown[u]) {
        continue;
      }
      const auto key = std::minmax(u, v);
      pairs[key] = {normalised(key.first), normalised(key.second)};
    }
  };
  auto become_idle = [&](std::size_t u) {
    for (auto it = pairs.begin(); it != pairs.end();) {
      it = (it->first.first == u || it->first.second == u) ? pairs.erase(it) : std::next(it);
    }
  };

  // Shares are judged while load is offered (up to the last arrival): after that every policy
  // drains the same backlog and ends with the same totals.
  const double window_end_s = workload.empty() ? 0 : workload.back().arrival_s;
  std::unordered_map<std::string, double> served_in_window;
  bool window_closed = false;
  double now = 0;
  std::size_t next_arrival = 0;
  std::size_t in_flight = 0;
  while (next_arrival < workload.size() || in_flight > 0) {
    for (; next_arrival < workload.size() && workload[next_arrival].arrival_s <= now; ++next_arrival) {
      const SimRequest& r = workload[next_arrival];
      UserStats& user = result.users[user_index[r.user]];
      ++user.submitted;
      if (!metered.enqueue(r, now)) {
        ++user.refused;
        continue;
      }
      ++in_flight;
      if (outstanding[user_index[r.user]]++ == 0) become_backlogged(user_index[r.user]);
    }
    const StepResult step = engine.step(metered, by_id, now);
    for (std::uint64_t id : step.admitted) {
      const SimRequest& r = by_id.at(id);
      UserStats& user = result.users[user_index[r.user]];
      user.queue_delays_s.push_back(now - r.arrival_s);
      result.groups[user.group].queue_delays_s.push_back(now - r.arrival_s);
    }
    if (step.duration_s == 0) {
      if (next_arrival < workload.size()) {
        now = std::max(now, workload[next_arrival].arrival_s);
        continue;
      }
      break;  // work is queued that the policy will never release
    }
    now += step.duration_s;
    if (!window_closed && now >= window_end_s) {
      served_in_window = served;
      window_closed = true;
    }
    for (std::uint64_t id : step.finished) {
      const std::size_t u = user_index[by_id.at(id).user];
      ++result.users[u].completed;
      --in_flight;
      if (--outstanding[u] == 0) become_idle(u);
    }
    for (const auto& [key, base] : pairs) {
      const double gap = std::abs((normalised(key.first) - base.first) - (normalised(key.second) - base.second));
      GroupStats& group = result.groups[result.users[key.first].group];
      group.max_pair_deviation = std::max(group.max_pair_deviation, gap);
    }
  }
  result.makespan_s = now;
  if (!window_closed) served_in_window = served;

  for (UserStats& u : result.users) {
    u.weighted_tokens = served_in_window[u.user];
    result.groups[u.group].weighted_tokens += u.weighted_tokens;
  }
  for (std::size_t g = 0; g < result.groups.size(); ++g) {
    double sum = 0, sum_sq = 0;
    std::size_t n = 0;
    for (UserStats& u : result.users) {
      if (u.group != g) continue;
      if (result.groups[g].weighted_tokens > 0) u.served_share = u.weighted_tokens / result.groups[g].weighted_tokens;
      if (u.quota_share <= 0 || u.completed == 0) continue;
      const double x = u.weighted_tokens / u.quota_share;
      sum += x;
      sum_sq += x * x;
      ++n;
    }
    if (n > 0 && sum_sq > 0) result.groups[g].jain_index = sum * sum / (static_cast<double>(n) * sum_sq);
  }
  return result;
}

}  // namespace tiergate::qos_sim
