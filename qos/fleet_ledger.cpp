#include "qos/fleet_ledger.h"

#include <algorithm>

namespace tiergate::qos {

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
    auto [it, inserted] = clocks_.try_emplace({c.group, c.scavenger}, c.virtual_time);
    if (!inserted) it->second = std::max(it->second, c.virtual_time);
    FleetClockUpdate clock;
    clock.virtual_time = it->second;
    auto& per_replica = floors_[{c.group, c.scavenger}];
    per_replica[replica] = {c.waiting_floor, now_s};
    for (auto f = per_replica.begin(); f != per_replica.end();) {
      if (now_s - f->second.second > load_ttl_s_) {
        f = per_replica.erase(f);
        continue;
      }
      if (f->first != replica) clock.others_waiting_floor = std::min(clock.others_waiting_floor, f->second.first);
      ++f;
    }
    update.clocks.push_back(clock);
  }
  for (const FleetLoad& l : report.loads) {
    auto& per_replica = loads_[l.group];
    per_replica[replica] = {l.active_unknown, now_s};
    std::size_t others = 0;
    for (auto it = per_replica.begin(); it != per_replica.end();) {
      if (now_s - it->second.second > load_ttl_s_) {
        it = per_replica.erase(it);
        continue;
      }
      if (it->first != replica) others += it->second.first;
      ++it;
    }
    update.others_active_unknown.push_back(others);
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
  loads_.clear();
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
