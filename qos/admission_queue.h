// Decides whose work the engine does (DESIGN.md §3). Strict priority across the config's groups;
// inside a group, the user with the smallest virtual token counter (weighted tokens served /
// share), FIFO per user; quota-0 users only when no positive-quota user of the group has work.
// The same order governs both questions the engine asks: which waiting request starts next
// (next(), and the admissions of plan_step()) and, every step, how the step's sequences and tokens
// are split among the running requests (plan_step(), with isolation of higher groups' first
// tokens). With QoS disabled: one FCFS queue, every running request served each step.
// Owned by the server wiring; thread-safe (gateway threads enqueue/cancel, the engine thread
// plans, charges, finishes, preempts): each call takes one short mutex, never held across a model
// step. Expected outcomes (full queue, unconfigured user, nothing fits) are return values.
//
// Request states:  enqueue: → waiting;  next / plan_step: waiting → running;  preempt: running →
// waiting (head of its user's queue);  finish / cancel: running → gone;  cancel / expire: waiting →
// gone. A user's account lives while it has work, and after that only while its counter still
// carries debt that a later lift would not erase (unknown users; configured users keep theirs),
// for at most kMaxDebtorsPerClass such users per group: memory is bounded however many distinct
// user ids arrive.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "qos/config.h"
#include "qos/step_plan.h"
#include "qos/usage_report.h"

namespace tiergate::qos {

using Clock = std::chrono::steady_clock;

inline constexpr std::int64_t kNoTokenLimit = std::numeric_limits<std::int64_t>::max();

struct QueuedRequest {
  RequestId id = 0;
  std::string user_id;
  std::int64_t prompt_tokens = 0;  // tokens the engine must compute (and hold) to start it
  std::int64_t max_tokens = 0;
};

enum class EnqueueStatus { kQueued, kQueueFull, kUserNotConfigured, kDuplicateId };

struct EnqueueResult {
  EnqueueStatus status = EnqueueStatus::kQueued;
  std::string group;         // the user's group ("" when not configured)
  double retry_after_s = 0;  // set with kQueueFull, for the Retry-After header
};

// What the engine is handed: it sees an integer priority, never groups or quotas.
struct Admission {
  RequestId id = 0;
  std::string user_id;
  std::string group;
  int priority = 0;  // larger = more important; the top group has groups().size() - 1
  std::int64_t prompt_tokens = 0;
  std::int64_t max_tokens = 0;
  Clock::duration waited{};  // time spent waiting since arrival (less any time it ran)
  bool first_start = true;   // false when it ran before (preempted, or a start that failed)
};

struct ExpiredRequest {
  RequestId id = 0;
  std::string user_id;
  std::string group;
};

class AdmissionQueue {
 public:
  explicit AdmissionQueue(std::shared_ptr<const Config> config);
  ~AdmissionQueue();
  AdmissionQueue(const AdmissionQueue&) = delete;
  AdmissionQueue& operator=(const AdmissionQueue&) = delete;

  // → waiting. Refused (nothing stored) when the user is not configured, the group's queue is
  // full, or the id is already known.
  EnqueueResult enqueue(QueuedRequest request, Clock::time_point now);

  // The request to admit now, waiting → running; nullopt when nothing waits or when the policy's
  // pick needs more than `prompt_token_limit` tokens (head-of-line: strict priority and fair order
  // are never bypassed to fill a gap). For engines that serve every running request each step.
  std::optional<Admission> next(Clock::time_point now, std::int64_t prompt_token_limit = kNoTokenLimit);

  // One engine step's plan (step_plan.h): `running` is every running request's outstanding work in
  // admission order. Groups are served in priority order; inside a group the capacity goes unit by
  // unit (one request's decode tokens, or a prefill piece, or a waiting request's start) to the user
  // whose counter plus this step's grants so far, over its share, is smallest. While a group has a
  // request on its way to its first token, strictly lower groups get at most that group's
  // `lower_groups_step_tokens` tokens in the step. A waiting request that cannot get its KV blocks
  // may preempt running requests of strictly lower groups (lowest group, most recently admitted
  // first); otherwise it blocks admission for its own and every lower group (head of line).
  // Admitted requests are waiting → running on return.
  void plan_step(std::span<const RunningWork> running, const StepCapacity& capacity, Clock::time_point now,
                 StepPlan& plan);

  // Which of `running` (non-empty, admission order) to preempt when running sequences need KV
  // blocks that are not there: the lowest group's; inside it, the user most over its share (largest
  // counter); that user's most recently admitted request.
  RequestId memory_victim(std::span<const RunningWork> running) const;

  // Charges processed tokens to a user's account (prompt tokens as prefilled, output tokens as
  // generated), weighted by the config's token weights.
  void charge(std::string_view user_id, std::int64_t prompt_tokens, std::int64_t output_tokens);
  // The same, to the account of a waiting or running request; nothing if the id is unknown.
  void charge(RequestId id, std::int64_t prompt_tokens, std::int64_t output_tokens);

  // running → gone. False if the id is not running.
  bool finish(RequestId id);
  // waiting or running → gone (client went away). False if unknown.
  bool cancel(RequestId id);
  // running → waiting at the head of its user's queue; it resumes by recomputation, which is never
  // charged. `resume_tokens` (when >= 0) replaces the tokens it must compute to start again
  // (prompt + generated so far) and `resume_blocks` (when > 0) the KV blocks that takes. A request
  // that already streamed output is exempt from the queue-wait bound from now on; one that has not
  // (a start that failed, a preemption before its first token) keeps waiting against it, its wait
  // counted from its arrival less the time it ran. False if the id is not running.
  bool preempt(RequestId id, Clock::time_point now, std::int64_t resume_tokens = -1, std::int64_t resume_blocks = 0,
               bool streamed = true);
  // waiting → gone for requests that waited past their group's max_queue_wait_s (answered 503).
  std::vector<ExpiredRequest> expire(Clock::time_point now);
  // waiting → gone for every waiting request (the server is stopping); returns their ids.
  std::vector<RequestId> drain_waiting();

  // Swaps the config in: queued and running requests are kept, counters of users that remain are
  // kept. Waiting requests of users the new config no longer admits are served last, as
  // scavengers of the lowest group, rather than dropped.
  void reload(std::shared_ptr<const Config> config);

  std::shared_ptr<const Config> config() const;
  std::size_t waiting() const;
  std::size_t running() const;
  std::size_t accounts() const;  // users the queue keeps state for (bounded: see the header)
  UsageReport usage() const;

 private:
  friend class AdmissionQueueTest;
  struct Account;
  struct Pending;
  // Order of a group's ready accounts: positive quota first, then smallest counter, then oldest head.
  using ReadyKey = std::tuple<bool, double, std::uint64_t, Account*>;
  struct GroupState {
    std::set<ReadyKey> ready;        // accounts with at least one waiting request
    std::size_t queued = 0;          // waiting requests
    std::size_t active_unknown = 0;  // unknown-user accounts with waiting or running requests
    double virtual_time[2] = {0, 0}; // per class (positive, scavenger): counter of the last admitted
    // Idle accounts that may be dropped (unknown or no longer configured users) but still carry a
    // counter above what a lift would give them back, per class, smallest counter first.
    std::set<std::pair<double, Account*>> debtors[2];
    UserUsage retired;               // what the users whose accounts were dropped were served
    std::uint64_t retired_users = 0;
  };

  std::size_t group_count() const;
  double share(const Account& account) const;
  bool scavenger(const Account& account) const;
  void index(Account& account);
  void unindex(Account& account);
  void set_active(Account& account, bool active);
  void place(Account& account);  // (re)resolves its group under config_
  Account* account_for(std::string_view user_id, const Resolution& resolution);
  int priority_of(std::size_t group) const;
  bool remove_waiting(Account& account, RequestId id);
  void rebuild_groups();
  // waiting → running for the head of `account`; returns what the engine is told.
  Admission admit_head(Account& account, Clock::time_point now);
  void plan_fcfs(std::span<const RunningWork> running, const StepCapacity& capacity, Clock::time_point now,
                 StepPlan& plan);
  // The counter an account of `group` and class `scav` returning from idle is lifted to.
  double lift_floor(std::size_t group, bool scav) const;
  // A value no future lift floor of the group and class will be below (floors only rise).
  double safe_floor(std::size_t group, bool scav) const;
  // Drops an idle account of an unknown (or no longer configured) user once its counter is at or
  // below the safe floor, so that dropping it cannot change any decision; until then it waits
  // among the group's debtors.
  void retire_if_idle(Account& account);
  void sweep_debtors(std::size_t group);
  void retire(Account& account);  // drops it, its service kept in the group's totals
  void charge_account(Account& account, std::int64_t prompt_tokens, std::int64_t output_tokens);
  void forget_debtor(Account& account);

  // Idle accounts kept for their debt, per group and class, at most (see retire_if_idle).
  static constexpr std::size_t kMaxDebtorsPerClass = 10000;

  mutable std::mutex mutex_;
  std::shared_ptr<const Config> config_;
  std::vector<GroupState> groups_;
  std::unordered_map<std::string, std::unique_ptr<Account>> accounts_;
  std::unordered_map<RequestId, Account*> requests_;  // waiting and running, by id
  std::uint64_t next_seq_ = 0;
  std::size_t running_ = 0;
};

}  // namespace tiergate::qos
