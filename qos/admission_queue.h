// Decides which waiting request the engine admits next (DESIGN.md §3). Strict priority across the
// config's groups; inside a group, the backlogged user with the smallest virtual token counter
// (weighted tokens served / share), FIFO per user; quota-0 users only when no positive-quota user
// of the group waits. With QoS disabled: one FCFS queue.
// Owned by the server wiring; thread-safe (gateway threads enqueue/cancel, the engine thread calls
// next/charge/finish/preempt): each call takes one short mutex, never held across a model step.
// Expected outcomes (full queue, unconfigured user, nothing fits) are return values.
//
// Request states:  enqueue: → waiting;  next: waiting → running;  preempt: running → waiting
// (head of its user's queue);  finish / cancel: running → gone;  cancel / expire: waiting → gone.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "qos/config.h"
#include "qos/usage_report.h"

namespace tiergate::qos {

using RequestId = std::uint64_t;
using Clock = std::chrono::steady_clock;

inline constexpr std::int64_t kNoTokenLimit = std::numeric_limits<std::int64_t>::max();

struct QueuedRequest {
  RequestId id = 0;
  std::string user_id;
  std::int64_t prompt_tokens = 0;  // tokens the engine must hold to start it
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
  Clock::duration waited{};
};

// The request next() would return, without taking it (for the engine's preemption decision).
struct NextCandidate {
  RequestId id = 0;
  int priority = 0;
  std::int64_t prompt_tokens = 0;
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
  // are never bypassed to fill a gap).
  std::optional<Admission> next(Clock::time_point now, std::int64_t prompt_token_limit = kNoTokenLimit);
  std::optional<NextCandidate> peek() const;

  // Charges processed tokens to a user's account (prompt tokens as prefilled, output tokens as
  // generated), weighted by the config's token weights.
  void charge(std::string_view user_id, std::int64_t prompt_tokens, std::int64_t output_tokens);

  // running → gone. False if the id is not running.
  bool finish(RequestId id);
  // waiting or running → gone (client went away). False if unknown.
  bool cancel(RequestId id);
  // running → waiting at the head of its user's queue; it resumes by recomputation and is exempt
  // from the queue-wait bound. False if the id is not running.
  bool preempt(RequestId id);
  // waiting → gone for requests that waited past their group's max_queue_wait_s (answered 503).
  std::vector<ExpiredRequest> expire(Clock::time_point now);

  // Whether some waiting request belongs to a group strictly above `priority`.
  bool waiting_outranks(int priority) const;

  // Swaps the config in: queued and running requests are kept, counters of users that remain are
  // kept. Waiting requests of users the new config no longer admits are served last, as
  // scavengers of the lowest group, rather than dropped.
  void reload(std::shared_ptr<const Config> config);

  std::shared_ptr<const Config> config() const;
  std::size_t waiting() const;
  std::size_t running() const;
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

  mutable std::mutex mutex_;
  std::shared_ptr<const Config> config_;
  std::vector<GroupState> groups_;
  std::unordered_map<std::string, std::unique_ptr<Account>> accounts_;
  std::unordered_map<RequestId, Account*> requests_;  // waiting and running, by id
  std::uint64_t next_seq_ = 0;
  std::size_t running_ = 0;
};

}  // namespace tiergate::qos
