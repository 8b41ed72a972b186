// Replays a workload through a Policy on the EngineModel and measures what each user and group got:
// weighted tokens served while load is offered and their share of the group's service against the
// quota share, queueing delay
// percentiles, Jain's fairness index over quota-normalised service, and the largest gap
// |ΔW_a/s_a − ΔW_b/s_b| between two users of a group over any interval in which both were
// backlogged (the quantity DESIGN.md §3 bounds). Deterministic: same inputs, same numbers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qos/config.h"
#include "tools/qos_sim/engine_model.h"
#include "tools/qos_sim/policy.h"
#include "tools/qos_sim/workload.h"

namespace tiergate::qos_sim {

struct UserStats {
  std::string user;
  std::size_t group = 0;     // index into the config's groups
  double quota_share = 0;    // normalised quota (unknown users: the default share split evenly)
  std::uint64_t submitted = 0;
  std::uint64_t refused = 0;
  std::uint64_t completed = 0;
  double weighted_tokens = 0;  // served up to the last arrival (while load is offered)
  double served_share = 0;     // of its group's weighted tokens in that window
  std::vector<double> queue_delays_s;
};

struct GroupStats {
  std::string name;
  double weighted_tokens = 0;
  double jain_index = 1;        // over users with positive quota that were served
  double max_pair_deviation = 0;  // share-normalised weighted tokens
  std::vector<double> queue_delays_s;
};

struct SimResult {
  std::string policy;
  double makespan_s = 0;
  std::vector<UserStats> users;  // first-arrival order
  std::vector<GroupStats> groups;
};

SimResult simulate(const std::vector<SimRequest>& workload, Policy& policy, const EngineShape& shape,
                   const qos::Config& config);

// Nearest-rank percentile (p in [0, 100]); 0 for an empty sample.
double percentile(std::vector<double> values, double p);

}  // namespace tiergate::qos_sim
