// AdmissionQueue's side of fleet-wide fair share (qos/fleet_counters.h, DESIGN.md §8): what each
// user's counter went through here since the last report, and how the fleet's answer replaces it.
// The queue's other operations are in admission_queue.cpp and step_planner.cpp.
//
// Invariant, per account and while no report is out: counter == fleet_pending.apply(fleet_base).
// A report takes fleet_pending out (the sync thread holds it while it is in flight; fleet_base is not
// moved, so the invariant reads counter == pending ∘ in-flight (base)); its answer V is the fleet's
// counter with the in-flight op folded in by the store, so counter := pending (V) and base := V.
#include <algorithm>
#include <cmath>
#include <iterator>
#include <unordered_map>

#include "qos/admission_queue.h"
#include "qos/admission_queue_state.h"
#include "qos/check.h"

namespace tiergate::qos {
namespace {

const std::string kFcfsGroup = "fcfs";

}  // namespace

void AdmissionQueue::enable_fleet_sync() {
  std::lock_guard lock(mutex_);
  if (fleet_) return;
  fleet_ = true;
  for (auto& [user, account] : accounts_) {
    account->fleet_base = account->counter;
    if (!account->idle()) fleet_tracked_.insert(account.get());
  }
}

std::uint64_t AdmissionQueue::fleet_reports_dropped() const {
  std::lock_guard lock(mutex_);
  return fleet_dropped_;
}

void AdmissionQueue::fleet_charged(Account& account, double counter_delta, double cost, std::int64_t prompt_tokens,
                                   std::int64_t output_tokens) {
  if (!fleet_) return;
  account.fleet_pending.then_add(counter_delta);
  account.fleet_served.weighted_tokens += cost;
  account.fleet_served.prompt_tokens += prompt_tokens;
  account.fleet_served.output_tokens += output_tokens;
  fleet_tracked_.insert(&account);
}

void AdmissionQueue::fleet_lifted(Account& account, double floor) {
  if (!fleet_) return;
  account.fleet_pending.then_lift(floor);
  account.fleet_known = false;
  fleet_tracked_.insert(&account);
}

void AdmissionQueue::fleet_admitted(Account& account) {
  if (!fleet_) return;
  ++account.fleet_served.requests;
  fleet_tracked_.insert(&account);
}

void AdmissionQueue::fleet_keep_pending(Account& account, const std::string& group, bool scav) {
  if (account.fleet_pending.identity() && account.fleet_served.empty()) return;
  if (fleet_backlog_.size() >= kMaxFleetBacklog) {
    // The store has been unreachable for a long time and users keep coming and going: forget the
    // oldest dropped user's record rather than grow without bound (counted; /metrics shows it).
    fleet_backlog_.erase(fleet_backlog_.begin());
    ++fleet_dropped_;
  }
  fleet_backlog_.push_back({group.empty() ? kFcfsGroup : group, scav, account.user_id, account.unknown,
                            account.fleet_base, account.fleet_pending, account.fleet_served, false});
  account.fleet_pending = {};
  account.fleet_served = {};
}

void AdmissionQueue::set_counter(Account& account, double counter) {
  const bool indexed = account.ready_key.has_value();
  if (indexed) unindex(account);
  const bool debtor = account.debtor.has_value();
  if (debtor) forget_debtor(account);
  account.counter = counter;
  if (indexed) index(account);
  if (debtor) retire_if_idle(account);  // `account` may be gone after this line
}

FleetReport AdmissionQueue::take_fleet_report() {
  std::lock_guard lock(mutex_);
  FleetReport report;
  if (!fleet_) return report;
  report.users = std::move(fleet_backlog_);
  fleet_backlog_.clear();
  for (auto it = fleet_tracked_.begin(); it != fleet_tracked_.end();) {
    Account& account = **it;
    const std::string group = group_name(account.group);
    report.users.push_back({group.empty() ? kFcfsGroup : group, scavenger(account), account.user_id, account.unknown,
                            account.fleet_base, account.fleet_pending, account.fleet_served, !account.idle()});
    account.fleet_pending = {};
    account.fleet_served = {};
    // An idle account is reported once more (its last charges), then only when it comes back.
    it = account.idle() ? fleet_tracked_.erase(it) : std::next(it);
  }
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const std::string group = group_name(g).empty() ? kFcfsGroup : group_name(g);
    for (bool scav : {false, true}) {
      report.clocks.push_back({group, scav, groups_[g].virtual_time[scav], waiting_floor(g, scav, true)});
    }
    report.loads.push_back({group, groups_[g].active_unknown});
  }
  return report;
}

void AdmissionQueue::apply_fleet_update(const FleetReport& report, const FleetUpdate& update) {
  std::lock_guard lock(mutex_);
  if (!fleet_) return;
  QOS_CHECK(update.counters.size() == report.users.size());
  QOS_CHECK(update.clocks.size() == report.clocks.size());
  QOS_CHECK(update.others_active_unknown.size() == report.loads.size());
  std::unordered_map<std::string, std::size_t> group_index;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    group_index[group_name(g).empty() ? kFcfsGroup : group_name(g)] = g;
  }
  for (std::size_t i = 0; i < report.users.size(); ++i) {
    const FleetUserReport& sent = report.users[i];
    const double value = update.counters[i];
    if (!std::isfinite(value)) continue;
    auto it = accounts_.find(sent.user);
    if (it == accounts_.end()) continue;  // dropped since: nothing here to correct
    Account& account = *it->second;
    auto g = group_index.find(sent.group);
    // Moved by a reload since the report: its new key has a record of its own.
    if (g == group_index.end() || g->second != account.group || scavenger(account) != sent.scavenger) continue;
    account.fleet_base = value;
    account.fleet_known = true;
    set_counter(account, account.fleet_pending.apply(value));  // may drop an idle account
  }
  for (std::size_t i = 0; i < report.clocks.size(); ++i) {
    auto g = group_index.find(report.clocks[i].group);
    if (g == group_index.end()) continue;
    const bool scav = report.clocks[i].scavenger;
    const FleetClockUpdate& clock = update.clocks[i];
    GroupState& group = groups_[g->second];
    if (std::isfinite(clock.virtual_time)) group.virtual_time[scav] = std::max(group.virtual_time[scav], clock.virtual_time);
    group.fleet_floor[scav] = clock.others_waiting_floor;
  }
  for (std::size_t i = 0; i < report.loads.size(); ++i) {
    if (auto g = group_index.find(report.loads[i].group); g != group_index.end()) {
      groups_[g->second].fleet_active_unknown = update.others_active_unknown[i];
    }
  }
  for (std::size_t g = 0; g < groups_.size(); ++g) sweep_debtors(g);  // virtual times may have risen
}

void AdmissionQueue::restore_fleet_report(const FleetReport& report) {
  std::lock_guard lock(mutex_);
  if (!fleet_) return;
  std::vector<FleetUserReport> orphans;
  // Last entry first: each older record is put in front of what came after it, so that two entries
  // of one user (a dropped account's, then its successor's) resume in the order they happened.
  for (auto entry = report.users.rbegin(); entry != report.users.rend(); ++entry) {
    const FleetUserReport& sent = *entry;
    auto it = accounts_.find(sent.user);
    Account* account = it == accounts_.end() ? nullptr : it->second.get();
    const std::string group = account ? group_name(account->group) : std::string();
    // The same account under the same key and from the same base: its record resumes as if the
    // report had not been taken. Otherwise the report entry goes back as it was.
    if (account && (group.empty() ? kFcfsGroup : group) == sent.group && scavenger(*account) == sent.scavenger &&
        account->fleet_base == sent.base) {
      CounterOp op = sent.op;
      op.then(account->fleet_pending);
      account->fleet_pending = op;
      FleetServed served = sent.served;
      served += account->fleet_served;
      account->fleet_served = served;
      fleet_tracked_.insert(account);
    } else if (!sent.op.identity() || !sent.served.empty()) {
      orphans.push_back(sent);
      orphans.back().active = false;
    }
  }
  // Older records first: the store applies a report's entries in order.
  std::reverse(orphans.begin(), orphans.end());
  orphans.insert(orphans.end(), std::make_move_iterator(fleet_backlog_.begin()),
                 std::make_move_iterator(fleet_backlog_.end()));
  while (orphans.size() > kMaxFleetBacklog) {
    orphans.erase(orphans.begin());
    ++fleet_dropped_;
  }
  fleet_backlog_ = std::move(orphans);
}

}  // namespace tiergate::qos
