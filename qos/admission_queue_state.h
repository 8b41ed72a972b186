// The admission queue's per-request and per-user state, shared by its two translation units
// (admission_queue.cpp: the queue's operations; step_planner.cpp: the per-step plan). Private to
// qos/; guarded by AdmissionQueue::mutex_.
#pragma once

#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "qos/admission_queue.h"

namespace tiergate::qos {

struct AdmissionQueue::Pending {
  QueuedRequest request;
  Clock::time_point queued_since;   // when it last started waiting
  Clock::duration waited_before{};  // waiting done before it last started (it ran, then came back)
  std::uint64_t seq = 0;            // global arrival order: FIFO per user, tie-break across users
  bool started_before = false;      // admitted once already: counted once, its wait recorded once
  bool streamed = false;            // it sent output before: exempt from the wait bound
  std::int64_t blocks = 0;          // KV blocks it needs to start; 0 = as many as its tokens take

  Clock::duration waited(Clock::time_point now) const { return waited_before + (now - queued_since); }
};

// One per user id; unknown users get their own account inside the group's default share.
struct AdmissionQueue::Account {
  std::string user_id;
  std::size_t group = 0;
  bool unknown = false;
  bool orphaned = false;   // the config in force no longer admits this user
  double quota_share = 0;  // known users: normalised quota; unknown users: the whole default share
  double counter = 0;      // virtual counter: Σ weighted tokens / share at the time of the charge
  std::deque<Pending> waiting;
  std::unordered_map<RequestId, Pending> running;  // admitted, kept for preemption
  std::optional<ReadyKey> ready_key;  // its key in groups_[group].ready while waiting is non-empty
  bool active = false;                // waiting or running (counted in active_unknown)
  std::optional<std::pair<bool, double>> debtor;  // (class, counter) while in groups_[group].debtors
  UserUsage usage;

  bool idle() const { return waiting.empty() && running.empty(); }
  bool retirable() const { return unknown || orphaned; }
};

}  // namespace tiergate::qos
