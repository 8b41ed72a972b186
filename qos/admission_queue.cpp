#include "qos/admission_queue.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <utility>

#include "qos/admission_queue_state.h"
#include "qos/check.h"

namespace tiergate::qos {

AdmissionQueue::AdmissionQueue(std::shared_ptr<const Config> config) : config_(std::move(config)) {
  QOS_CHECK(config_ != nullptr);
  groups_.resize(group_count());
}

AdmissionQueue::~AdmissionQueue() = default;

std::size_t AdmissionQueue::group_count() const {
  return config_->enable_user_qos() ? std::max<std::size_t>(1, config_->groups().size()) : 1;
}

int AdmissionQueue::priority_of(std::size_t group) const {
  return static_cast<int>(group_count() - 1 - group);
}

double AdmissionQueue::share(const Account& account) const {
  if (!config_->enable_user_qos()) return 1;
  if (account.orphaned) return 0;
  if (account.unknown) {
    // The default share is split evenly among the unknown users that currently have work.
    const std::size_t n = std::max<std::size_t>(1, groups_[account.group].active_unknown);
    return account.quota_share / static_cast<double>(n);
  }
  return account.quota_share;
}

bool AdmissionQueue::scavenger(const Account& account) const { return share(account) <= 0; }

void AdmissionQueue::index(Account& account) {
  QOS_CHECK(!account.ready_key && !account.waiting.empty());
  // FCFS ignores counters: the oldest head wins, which is the oldest request overall.
  const double counter = config_->enable_user_qos() ? account.counter : 0.0;
  account.ready_key = ReadyKey{scavenger(account), counter, account.waiting.front().seq, &account};
  groups_[account.group].ready.insert(*account.ready_key);
}

void AdmissionQueue::unindex(Account& account) {
  if (!account.ready_key) return;
  const std::size_t erased = groups_[account.group].ready.erase(*account.ready_key);
  QOS_CHECK(erased == 1);
  account.ready_key.reset();
}

void AdmissionQueue::set_active(Account& account, bool active) {
  if (account.active == active) return;
  account.active = active;
  if (!account.unknown) return;
  GroupState& group = groups_[account.group];
  if (active) {
    ++group.active_unknown;
  } else {
    QOS_CHECK(group.active_unknown > 0);
    --group.active_unknown;
  }
  // Unknown users' shares just changed; counters keep their value (charges already made stay
  // charged at the share they were made at) and their class cannot change (share/n > 0 iff the
  // default share > 0), so no re-indexing is needed.
}

void AdmissionQueue::place(Account& account) {
  const std::optional<Resolution> resolution = config_->resolve(account.user_id);
  account.orphaned = !resolution.has_value();
  if (resolution) {
    account.group = resolution->group;
    account.unknown = resolution->unknown;
    account.quota_share = resolution->share;
  } else {
    account.group = group_count() - 1;
    account.unknown = false;
    account.quota_share = 0;
  }
}

AdmissionQueue::Account* AdmissionQueue::account_for(std::string_view user_id,
                                                     const Resolution& resolution) {
  auto it = accounts_.find(std::string(user_id));
  if (it != accounts_.end()) return it->second.get();
  auto account = std::make_unique<Account>();
  account->user_id = std::string(user_id);
  account->group = resolution.group;
  account->unknown = resolution.unknown;
  account->quota_share = resolution.share;
  Account* raw = account.get();
  accounts_.emplace(account->user_id, std::move(account));
  return raw;
}

EnqueueResult AdmissionQueue::enqueue(QueuedRequest request, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  const std::optional<Resolution> resolution = config_->resolve(request.user_id);
  if (!resolution) return {EnqueueStatus::kUserNotConfigured, "", 0};
  const std::string group_name =
      config_->enable_user_qos() ? config_->groups()[resolution->group].name : "";
  if (requests_.count(request.id)) return {EnqueueStatus::kDuplicateId, group_name, 0};
  if (config_->enable_user_qos()) {
    const GroupLimits& limits = config_->groups()[resolution->group].limits;
    if (limits.max_queued && groups_[resolution->group].queued >= *limits.max_queued) {
      return {EnqueueStatus::kQueueFull, group_name, limits.retry_after_s};
    }
  }

  Account& account = *account_for(request.user_id, *resolution);
  if (account.idle()) {
    forget_debtor(account);
    set_active(account, true);
    // Lift: idle time banks no credit.
    account.counter = std::max(account.counter, lift_floor(account.group, scavenger(account)));
  }
  const RequestId id = request.id;
  const bool was_empty = account.waiting.empty();
  Pending pending;
  pending.request = std::move(request);
  pending.queued_since = now;
  pending.seq = next_seq_++;
  account.waiting.push_back(std::move(pending));
  if (was_empty) index(account);
  ++groups_[account.group].queued;
  requests_.emplace(id, &account);
  return {EnqueueStatus::kQueued, group_name, 0};
}

double AdmissionQueue::lift_floor(std::size_t group, bool scav) const {
  // The smallest counter among the group's waiting users of the same class, or the class's
  // virtual time when none waits.
  for (const ReadyKey& key : groups_[group].ready) {
    if (std::get<0>(key) == scav) return std::get<3>(key)->counter;
  }
  return groups_[group].virtual_time[scav];
}

double AdmissionQueue::safe_floor(std::size_t group, bool scav) const {
  // Waiting users' counters only grow, newcomers are lifted to at least the floor of their time,
  // and the virtual time only grows: no later floor is below the smaller of the two.
  return std::min(lift_floor(group, scav), groups_[group].virtual_time[scav]);
}

void AdmissionQueue::forget_debtor(Account& account) {
  if (!account.debtor) return;
  const std::size_t erased = groups_[account.group].debtors[account.debtor->first].erase(
      {account.debtor->second, &account});
  QOS_CHECK(erased == 1);
  account.debtor.reset();
}

void AdmissionQueue::retire_if_idle(Account& account) {
  if (!account.idle() || account.debtor) return;
  if (!config_->enable_user_qos()) return retire(account);  // FCFS: counters decide nothing
  if (!account.retirable()) return;
  const bool scav = scavenger(account);
  GroupState& group = groups_[account.group];
  if (account.counter > safe_floor(account.group, scav)) {
    account.debtor = std::pair{scav, account.counter};
    group.debtors[scav].emplace(account.counter, &account);
    // Memory stays bounded whatever the number of distinct users: past the cap, the smallest debt
    // (the one closest to the floor, so the least consequential) is forgiven.
    if (group.debtors[scav].size() > kMaxDebtorsPerClass) {
      Account& least = *group.debtors[scav].begin()->second;
      forget_debtor(least);
      retire(least);
    }
    return;
  }
  retire(account);
}

void AdmissionQueue::retire(Account& account) {
  GroupState& group = groups_[account.group];
  UserUsage& r = group.retired;
  r.weighted_tokens += account.usage.weighted_tokens;
  r.prompt_tokens += account.usage.prompt_tokens;
  r.output_tokens += account.usage.output_tokens;
  r.requests += account.usage.requests;
  ++group.retired_users;
  accounts_.erase(account.user_id);  // `account` is gone after this line
}

void AdmissionQueue::sweep_debtors(std::size_t g) {
  for (bool scav : {false, true}) {
    auto& debtors = groups_[g].debtors[scav];
    const double floor = safe_floor(g, scav);
    while (!debtors.empty() && debtors.begin()->first <= floor) {
      Account& account = *debtors.begin()->second;
      forget_debtor(account);
      retire_if_idle(account);
    }
  }
}

Admission AdmissionQueue::admit_head(Account& account, Clock::time_point now) {
  const std::size_t g = account.group;
  GroupState& group = groups_[g];
  unindex(account);
  Pending pending = std::move(account.waiting.front());
  account.waiting.pop_front();
  --group.queued;
  const bool scav = scavenger(account);
  group.virtual_time[scav] = std::max(group.virtual_time[scav], account.counter);
  ++running_;
  if (!pending.started_before) ++account.usage.requests;
  if (!account.waiting.empty()) index(account);

  Admission admission;
  admission.id = pending.request.id;
  admission.user_id = account.user_id;
  admission.group = config_->enable_user_qos() ? config_->groups()[g].name : "";
  admission.priority = priority_of(g);
  admission.prompt_tokens = pending.request.prompt_tokens;
  admission.max_tokens = pending.request.max_tokens;
  admission.waited = pending.waited(now);
  admission.first_start = !pending.started_before;
  pending.started_before = true;
  pending.waited_before = admission.waited;
  account.running.emplace(admission.id, std::move(pending));
  sweep_debtors(g);  // the virtual time may have risen
  return admission;
}

std::optional<Admission> AdmissionQueue::next(Clock::time_point now, std::int64_t prompt_token_limit) {
  std::lock_guard lock(mutex_);
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    GroupState& group = groups_[g];
    if (group.ready.empty()) continue;
    Account& account = *std::get<3>(*group.ready.begin());
    if (account.waiting.front().request.prompt_tokens > prompt_token_limit) return std::nullopt;
    return admit_head(account, now);
  }
  return std::nullopt;
}

void AdmissionQueue::charge(std::string_view user_id, std::int64_t prompt_tokens, std::int64_t output_tokens) {
  std::lock_guard lock(mutex_);
  auto it = accounts_.find(std::string(user_id));
  if (it == accounts_.end()) return;  // never admitted: nothing of it ran
  charge_account(*it->second, prompt_tokens, output_tokens);
}

void AdmissionQueue::charge(RequestId id, std::int64_t prompt_tokens, std::int64_t output_tokens) {
  std::lock_guard lock(mutex_);
  auto it = requests_.find(id);
  if (it != requests_.end()) charge_account(*it->second, prompt_tokens, output_tokens);
}

void AdmissionQueue::charge_account(Account& account, std::int64_t prompt_tokens, std::int64_t output_tokens) {
  const TokenWeights& w = config_->weights();
  const double cost = w.input * static_cast<double>(prompt_tokens) +
                      w.output * static_cast<double>(output_tokens);
  account.usage.weighted_tokens += cost;
  account.usage.prompt_tokens += prompt_tokens;
  account.usage.output_tokens += output_tokens;
  // Scavengers compete only with each other, with equal weight.
  const double s = share(account);
  const bool reindex = account.ready_key.has_value();
  if (reindex) unindex(account);
  account.counter += s > 0 ? cost / s : cost;
  if (reindex) index(account);
}

bool AdmissionQueue::finish(RequestId id) {
  std::lock_guard lock(mutex_);
  auto it = requests_.find(id);
  if (it == requests_.end()) return false;
  Account& account = *it->second;
  if (account.running.erase(id) == 0) return false;  // it is waiting, not running
  QOS_CHECK(running_ > 0);
  --running_;
  requests_.erase(it);
  if (account.idle()) {
    set_active(account, false);
    retire_if_idle(account);
  }
  return true;
}

bool AdmissionQueue::remove_waiting(Account& account, RequestId id) {
  auto pos = std::find_if(account.waiting.begin(), account.waiting.end(),
                          [&](const Pending& p) { return p.request.id == id; });
  if (pos == account.waiting.end()) return false;
  const bool head = pos == account.waiting.begin();
  if (head) unindex(account);
  account.waiting.erase(pos);
  --groups_[account.group].queued;
  requests_.erase(id);
  if (head && !account.waiting.empty()) index(account);
  if (account.idle()) {
    set_active(account, false);
    retire_if_idle(account);  // `account` may be gone after this line
  }
  return true;
}

bool AdmissionQueue::cancel(RequestId id) {
  {
    std::lock_guard lock(mutex_);
    auto it = requests_.find(id);
    if (it == requests_.end()) return false;
    if (remove_waiting(*it->second, id)) return true;
  }
  return finish(id);
}

bool AdmissionQueue::preempt(RequestId id, Clock::time_point now, std::int64_t resume_tokens,
                             std::int64_t resume_blocks, bool streamed) {
  std::lock_guard lock(mutex_);
  auto it = requests_.find(id);
  if (it == requests_.end()) return false;
  Account& account = *it->second;
  auto running = account.running.find(id);
  if (running == account.running.end()) return false;
  Pending pending = std::move(running->second);
  account.running.erase(running);
  --running_;
  // Its original seq is older than anything its user has waiting (FIFO per user), so it goes back
  // to the head of that queue and keeps its place among other users too.
  pending.streamed = pending.streamed || streamed;
  pending.queued_since = now;
  if (resume_tokens >= 0) pending.request.prompt_tokens = resume_tokens;
  if (resume_blocks > 0) pending.blocks = resume_blocks;
  unindex(account);
  account.waiting.push_front(std::move(pending));
  ++groups_[account.group].queued;
  index(account);
  return true;
}

std::vector<ExpiredRequest> AdmissionQueue::expire(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  std::vector<ExpiredRequest> expired;
  if (!config_->enable_user_qos()) return expired;
  // Only accounts with waiting requests are looked at, so the scan does not grow with idle users.
  std::vector<std::pair<Account*, RequestId>> victims;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const auto& bound = config_->groups()[g].limits.max_queue_wait_s;
    if (!bound) continue;
    const auto limit = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*bound));
    for (const ReadyKey& key : groups_[g].ready) {
      Account* account = std::get<3>(key);
      if (account->orphaned) continue;
      for (const Pending& p : account->waiting) {
        if (!p.streamed && p.waited(now) > limit) victims.emplace_back(account, p.request.id);
      }
    }
  }
  std::sort(victims.begin(), victims.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  for (auto& [account, id] : victims) {
    expired.push_back({id, account->user_id, config_->groups()[account->group].name});
    remove_waiting(*account, id);  // may retire the account: it is not used again
  }
  return expired;
}

std::vector<RequestId> AdmissionQueue::drain_waiting() {
  std::lock_guard lock(mutex_);
  std::vector<std::pair<Account*, RequestId>> all;
  for (GroupState& group : groups_) {
    for (const ReadyKey& key : group.ready) {
      for (const Pending& p : std::get<3>(key)->waiting) all.emplace_back(std::get<3>(key), p.request.id);
    }
  }
  std::vector<RequestId> ids;
  for (auto& [account, id] : all) {
    ids.push_back(id);
    remove_waiting(*account, id);
  }
  return ids;
}

void AdmissionQueue::rebuild_groups() {
  groups_.assign(group_count(), GroupState{});
  for (auto& [user, account] : accounts_) {
    account->ready_key.reset();
    account->active = false;
    account->debtor.reset();
  }
  for (auto& [user, account] : accounts_) {
    if (!account->idle()) set_active(*account, true);
    groups_[account->group].queued += account->waiting.size();
  }
  for (auto& [user, account] : accounts_) {
    if (!account->waiting.empty()) index(*account);
  }
}

void AdmissionQueue::reload(std::shared_ptr<const Config> config) {
  QOS_CHECK(config != nullptr);
  std::lock_guard lock(mutex_);
  auto group_name = [this](std::size_t g) {
    return config_->enable_user_qos() ? config_->groups()[g].name : std::string();
  };
  // Counters are only comparable inside one group and class: remember where everyone stood.
  std::unordered_map<Account*, std::pair<std::string, bool>> before;
  for (auto& [user, account] : accounts_) {
    before.emplace(account.get(), std::pair{group_name(account->group), scavenger(*account)});
  }
  std::unordered_map<std::string, GroupState> old_time;
  for (std::size_t g = 0; g < groups_.size(); ++g) old_time[group_name(g)] = groups_[g];

  config_ = std::move(config);
  for (auto& [user, account] : accounts_) place(*account);
  rebuild_groups();
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    if (auto it = old_time.find(group_name(g)); it != old_time.end()) {
      groups_[g].virtual_time[0] = it->second.virtual_time[0];
      groups_[g].virtual_time[1] = it->second.virtual_time[1];
      groups_[g].retired = it->second.retired;
      groups_[g].retired_users = it->second.retired_users;
    }
  }
  // A user that changed group or class starts at its new group's virtual time: no credit and no
  // debt carried across scales that cannot be compared.
  for (auto& [account, where] : before) {
    const bool scav = scavenger(*account);
    if (where.first == group_name(account->group) && where.second == scav) continue;
    const bool indexed = account->ready_key.has_value();
    if (indexed) unindex(*account);
    account->counter = groups_[account->group].virtual_time[scav];
    if (indexed) index(*account);
  }
  // Idle accounts the new config no longer lists (or lists as unknown) may now be dropped.
  std::vector<Account*> idle;
  for (auto& [user, account] : accounts_) {
    if (account->idle()) idle.push_back(account.get());
  }
  for (Account* account : idle) retire_if_idle(*account);
}

std::shared_ptr<const Config> AdmissionQueue::config() const {
  std::lock_guard lock(mutex_);
  return config_;
}

std::size_t AdmissionQueue::waiting() const {
  std::lock_guard lock(mutex_);
  std::size_t total = 0;
  for (const GroupState& g : groups_) total += g.queued;
  return total;
}

std::size_t AdmissionQueue::running() const {
  std::lock_guard lock(mutex_);
  return running_;
}

std::size_t AdmissionQueue::accounts() const {
  std::lock_guard lock(mutex_);
  return accounts_.size();
}

UsageReport AdmissionQueue::usage() const {
  std::lock_guard lock(mutex_);
  UsageReport report;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    GroupUsage group;
    group.name = config_->enable_user_qos() ? config_->groups()[g].name : "fcfs";
    group.priority = priority_of(g);
    group.waiting = groups_[g].queued;
    group.weighted_tokens = groups_[g].retired.weighted_tokens;
    group.requests = groups_[g].retired.requests;
    group.retired_users = groups_[g].retired_users;
    report.groups.push_back(group);
  }
  for (const auto& [user, account] : accounts_) {
    UserUsage u = account->usage;
    u.user_id = account->user_id;
    u.group = report.groups[account->group].name;
    u.unknown = account->unknown;
    u.waiting = account->waiting.size();
    u.running = account->running.size();
    u.quota_share = config_->enable_user_qos() ? account->quota_share : 1.0;
    u.virtual_counter = account->counter;
    GroupUsage& group = report.groups[account->group];
    group.weighted_tokens += u.weighted_tokens;
    group.requests += u.requests;
    group.running += u.running;
    report.users.push_back(std::move(u));
  }
  for (UserUsage& u : report.users) {
    for (const GroupUsage& g : report.groups) {
      if (g.name == u.group && g.weighted_tokens > 0) u.served_share = u.weighted_tokens / g.weighted_tokens;
    }
  }
  std::sort(report.users.begin(), report.users.end(), [&](const UserUsage& a, const UserUsage& b) {
    return std::tie(a.group, a.user_id) < std::tie(b.group, b.user_id);
  });
  return report;
}

}  // namespace tiergate::qos
