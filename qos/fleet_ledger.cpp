#include "qos/fleet_ledger.h"

#include <algorithm>

namespace tiergate::qos {
namespace {

// Drops the entries of replicas silent for longer than `lapse_s`, calls visit(replica, value) for the others.
template <class Value, class Visit>
void for_each_live(std::map<std::string, std::pair<Value, double>>& per_replica, double now_s, double lapse_s,
                   Visit visit) {
  for (auto it = per_replica.begin(); it != per_replica.end();) {
    if (now_s - it->second.second > lapse_s) {
      it = per_replica.erase(it);
      continue;
    }
    visit(it->first, it->second.first);
    ++it;
  }
}

}  // namespace

FleetUpdate FleetLedger::apply(const std::string& replica, std::uint64_t seq, const FleetReport& report,
                               double now_s) {
  std::uint64_t& last = last_seq_[replica];
  const bool fresh = seq > last;
  if (fresh) {
    last = seq;
    ++folded_;
  }
  FleetUpdate update;
  for (const FleetUserReport& u : report.users) {
    const auto key = std::make_tuple(u.group, u.scavenger, u.user);
    auto it = counters_.find(key);
    if (!fresh) {  // already folded in: answer with what the store holds
      update.counters.push_back(it != counters_.end() ? it->second : u.op.apply(u.base));
      continue;
    }
    const double value = u.op.apply(it != counters_.end() ? it->second : u.base);
    counters_[key] = value;
    update.counters.push_back(value);
    served_[{u.group, u.user}] += u.served;
    group_served_[u.group] += u.served;
  }
  for (const FleetClock& c : report.clocks) {
    const auto key = std::make_pair(c.group, c.scavenger);
    auto [it, inserted] = clocks_.try_emplace(key, c.virtual_time);
    if (!inserted) it->second = std::max(it->second, c.virtual_time);
    auto& per_replica = floors_[key];
    per_replica[replica] = {c.waiting_floor, now_s};
    FloorAggregate& agg = floor_aggregates_[key];
    if (now_s - agg.at >= aggregate_every_s_) {
      agg = FloorAggregate{};
      agg.at = now_s;
      for_each_live(per_replica, now_s, load_ttl_s_, [&](const std::string& id, double v) {
        if (v < agg.min1) {
          agg.min2 = agg.min1;
          agg.min1 = v;
          agg.min1_replica = id;
        } else if (v < agg.min2) {
          agg.min2 = v;
        }
      });
    }
    update.clocks.push_back({it->second, agg.min1_replica == replica ? agg.min2 : agg.min1});
  }
  for (const FleetLoad& l : report.loads) {
    auto& per_replica = loads_[l.group];
    per_replica[replica] = {l.active_unknown, now_s};
    LoadAggregate& agg = load_aggregates_[l.group];
    if (now_s - agg.at >= aggregate_every_s_) {
      agg = LoadAggregate{};
      agg.at = now_s;
      for_each_live(per_replica, now_s, load_ttl_s_, [&](const std::string&, std::size_t n) { agg.sum += n; });
    }
    update.others_active_unknown.push_back(agg.sum > l.active_unknown ? agg.sum - l.active_unknown : 0);
  }
  return update;
}

void FleetLedger::clear() {
  last_seq_.clear();
  counters_.clear();
  served_.clear();
  group_served_.clear();
  clocks_.clear();
  floors_.clear();
  floor_aggregates_.clear();
  loads_.clear();
  load_aggregates_.clear();
}

std::optional<double> FleetLedger::counter(const std::string& group, bool scavenger, const std::string& user) const {
  auto it = counters_.find({group, scavenger, user});
  if (it == counters_.end()) return std::nullopt;
  return it->second;
}

FleetServed FleetLedger::served(const std::string& group, const std::string& user) const {
  auto it = served_.find({group, user});
  return it == served_.end() ? FleetServed{} : it->second;
}

FleetServed FleetLedger::group_served(const std::string& group) const {
  auto it = group_served_.find(group);
  return it == group_served_.end() ? FleetServed{} : it->second;
}

}  // namespace tiergate::qos
