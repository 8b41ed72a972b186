// Fleet-wide fair share (DESIGN.md §8): the seam between one replica's AdmissionQueue and a fleet
// store that all replicas share (Redis, in gateway/fleet_sync.*; FleetLedger in memory for the
// simulator and the tests). Each sync a replica's queue reports, per user, what its charges and lifts
// did to the user's virtual counter since the last report (one CounterOp), what it served, and its
// groups' virtual times; the store folds every replica's reports into fleet-wide counters and answers
// with them; the queue then orders by the fleet's counter plus what it charged since. Counters are
// keyed by (group name, class, user): counters of different groups or classes are never compared.
// Plain values, no I/O: qos/ stays free of any network dependency.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace tiergate::qos {

// x ↦ max(x + add, floor): what one replica did to a counter since its last report. A charge adds,
// a lift (idle → waiting: idle time banks no credit) raises to a floor; any sequence of the two is
// again one such op, so a report carries one op per user whatever happened in between, and a lift
// applied by two replicas at once is applied once (max is idempotent), never twice.
struct CounterOp {
  double add = 0;
  double floor = -std::numeric_limits<double>::infinity();

  double apply(double x) const { return std::max(x + add, floor); }
  void then_add(double d) {
    add += d;
    floor += d;  // -inf stays -inf
  }
  void then_lift(double f) { floor = std::max(floor, f); }
  // This op, then `next`.
  void then(const CounterOp& next) {
    add += next.add;
    floor = std::max(floor + next.add, next.floor);
  }
  bool lifts() const { return floor != -std::numeric_limits<double>::infinity(); }
  bool identity() const { return add == 0 && !lifts(); }
};

// Tokens served (as charged), summed across reports for the fleet's usage figures.
struct FleetServed {
  double weighted_tokens = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t output_tokens = 0;
  std::uint64_t requests = 0;  // admitted for the first time

  FleetServed& operator+=(const FleetServed& o) {
    weighted_tokens += o.weighted_tokens;
    prompt_tokens += o.prompt_tokens;
    output_tokens += o.output_tokens;
    requests += o.requests;
    return *this;
  }
  bool empty() const { return weighted_tokens == 0 && prompt_tokens == 0 && output_tokens == 0 && requests == 0; }
};

struct FleetUserReport {
  std::string group;       // the group's name in this replica's config ("fcfs" with QoS off)
  bool scavenger = false;  // its class in the group (quota 0, or no longer configured)
  std::string user;
  bool unknown = false;    // served under the group's default entry
  double base = 0;         // the counter `op` was applied to here: the store's seed when it has none
  CounterOp op;
  FleetServed served;
  bool active = false;     // waiting or running on this replica
};

// A group's lift floor per class, as one replica sees it: the smallest counter among its waiting
// users (+inf when none waits) and its virtual time (the counter of the last request it admitted),
// the floor when nobody of the class waits anywhere. The fleet answers with the smallest waiting
// counter on the other replicas and the largest virtual time any replica reported: a user that
// comes back after being idle fleet-wide is lifted to the fleet's floor, while one still waiting on
// another replica is not lifted at all (it was not idle).
struct FleetClock {
  std::string group;
  bool scavenger = false;
  double virtual_time = 0;
  double waiting_floor = std::numeric_limits<double>::infinity();
};

struct FleetClockUpdate {
  double virtual_time = 0;                                      // the fleet's largest
  double others_waiting_floor = std::numeric_limits<double>::infinity();  // the other replicas' smallest
};

// Unknown users with work on this replica, per group: the default share is split among the fleet's.
struct FleetLoad {
  std::string group;
  std::size_t active_unknown = 0;
};

struct FleetReport {
  std::vector<FleetUserReport> users;  // at most one entry per live account, plus retired ones
  std::vector<FleetClock> clocks;
  std::vector<FleetLoad> loads;
};

// The store's answer to one report, entry for entry.
struct FleetUpdate {
  std::vector<double> counters;                   // per report.users: the fleet counter after the report
  std::vector<FleetClockUpdate> clocks;           // per report.clocks
  std::vector<std::size_t> others_active_unknown;  // per report.loads: the other replicas' unknown users
};

}  // namespace tiergate::qos
