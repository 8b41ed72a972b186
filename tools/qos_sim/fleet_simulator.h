// qos-sim's fleet mode: N replicas, each an AdmissionQueue with fleet sync on a modelled engine,
// behind a round-robin load balancer, sharing a FleetLedger (the store's semantics) that every
// replica syncs with every `sync_interval_s` over a round trip of `store_rtt_s` (the report reaches
// the store half-way, the answer comes back at the end; one report out at a time per replica).
// The workload is a skewed pair: two users of one group with closed-loop clients (each stream sends
// its next request when its last one finished), whose traffic reaches the replicas unevenly, so
// that each replica being fair on its own is not fair fleet-wide:
//   kPinned      A's clients are pinned to the first `a_fraction` of the replicas (session
//                affinity), B's to all; both backlogged wherever they are. With a_fraction > 1/2
//                (and quotas 50/50) fleet-wide fair is B alone where A is absent and the replicas
//                they share split so that the fleet totals are equal: the shared replicas must
//                act on fleet counters every moment, so stale counters show. Per-replica fairness
//                gives A a_fraction / 2 (37.5% at 0.75).
//   kRoundRobin  the integration test's: A only through replica 0, B round-robin over all. Fair
//                needs B's streams to pile up on replica 0, which takes about N request lifetimes.
// Measured: A's fleet-wide share of the pair's weighted tokens over every window of `window_s`
// (sliding by 1 s) after warm-up, and the store's load. Deterministic; simulated time only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qos/config.h"
#include "tools/qos_sim/engine_model.h"

namespace tiergate::qos_sim {

enum class FleetScenario { kPinned, kRoundRobin };

struct FleetShape {
  FleetScenario scenario = FleetScenario::kPinned;
  std::size_t replicas = 3;
  double sync_interval_s = 0.05;  // <= 0: no fleet sync, each replica fair on its own
  double store_rtt_s = 0.0005;
  double duration_s = 60;
  double warmup_s = 10;
  double window_s = 10;
  double a_fraction = 0.75;               // kPinned: A's share of the replicas (rounded up)
  std::size_t streams_per_replica = 32;  // kPinned: each user's on each of its replicas
  std::size_t streams_a = 32;     // kRoundRobin: user A's concurrent requests
  std::size_t streams_b = 64;     // kRoundRobin: user B's
  std::int64_t prompt_tokens = 64;
  std::int64_t output_tokens = 64;
  std::uint64_t seed = 1;         // phases of the replicas' sync clocks
};

struct FleetResult {
  double quota_a = 0;             // A's quota share of the pair
  double share_a = 0;             // A's share of the pair's weighted tokens after warm-up
  double max_deviation_pp = 0;    // largest |share_a - quota_a| over the windows, percentage points
  std::vector<double> window_shares_a;  // consecutive windows after warm-up
  double weighted_tokens_per_s = 0;     // the pair's, fleet-wide, after warm-up
  double store_round_trips_per_s = 0;   // one scripted call per sync
  double store_entries_per_s = 0;       // user entries folded per second (≈ key operations / 3)
};

FleetResult simulate_fleet(const std::shared_ptr<const qos::Config>& config, const std::string& user_a,
                           const std::string& user_b, const EngineShape& engine, const FleetShape& fleet);

// The table qos-sim --fleet prints: one row per (replicas, interval), "none" for no fleet sync.
std::string fleet_table_header();
std::string fleet_table_row(const FleetShape& fleet, const FleetResult& result);

}  // namespace tiergate::qos_sim
