// tools/qos_sim/fleet_simulator.*: fleet-wide fair share through the in-memory store, with its
// negative control (no fleet sync), in simulated time.
#include "tools/qos_sim/fleet_simulator.h"

#include <gtest/gtest.h>

#include "qos/config_parser.h"

namespace tiergate::qos_sim {
namespace {

std::shared_ptr<const qos::Config> gold_pair(int quota_a) {
  const std::string text = R"({"enable_user_qos": true, "user_groups": ["Gold"], "user_group_map": {"Gold": [
      {"id": "a", "quota_pct": )" + std::to_string(quota_a) + R"(}, {"id": "b", "quota_pct": )" +
                           std::to_string(100 - quota_a) + "}]}}";
  auto parsed = qos::parse_config(text, "gold_pair.json");
  EXPECT_TRUE(parsed.ok()) << parsed.describe();
  return parsed.config;
}

FleetResult run(FleetScenario scenario, std::size_t replicas, double sync_s, int quota_a = 50) {
  FleetShape fleet;
  fleet.scenario = scenario;
  fleet.replicas = replicas;
  fleet.sync_interval_s = sync_s;
  fleet.duration_s = 40;
  return simulate_fleet(gold_pair(quota_a), "a", "b", EngineShape{}, fleet);
}

TEST(FleetSimulator, PinnedSkewIsFairFleetWideOnlyWithTheSync) {
  const FleetResult synced = run(FleetScenario::kPinned, 4, 0.05);  // a on 3 of 4 replicas
  EXPECT_LT(synced.max_deviation_pp, 2);
  const FleetResult alone = run(FleetScenario::kPinned, 4, 0);
  EXPECT_NEAR(alone.share_a, 0.375, 0.01);  // each replica 50/50 on its own
  EXPECT_GT(alone.max_deviation_pp, 10);
}

TEST(FleetSimulator, UnequalQuotasHoldFleetWide) {
  const FleetResult synced = run(FleetScenario::kPinned, 4, 0.05, 70);
  EXPECT_NEAR(synced.quota_a, 0.7, 1e-12);
  EXPECT_LT(synced.max_deviation_pp, 2);
}

TEST(FleetSimulator, RoundRobinSkewOfTheIntegrationTest) {
  const FleetResult synced = run(FleetScenario::kRoundRobin, 3, 0.05);
  EXPECT_LT(synced.max_deviation_pp, 3);
  const FleetResult alone = run(FleetScenario::kRoundRobin, 3, 0);
  EXPECT_LT(alone.share_a, 0.3);  // replica 0 splits evenly, the others serve only b
}

TEST(FleetSimulator, StaleCountersCostFairness) {
  EXPECT_GT(run(FleetScenario::kPinned, 4, 1.0).max_deviation_pp, run(FleetScenario::kPinned, 4, 0.01).max_deviation_pp);
}

TEST(FleetSimulator, OneRoundTripPerReplicaAndIntervalAndDeterministic) {
  const FleetResult a = run(FleetScenario::kPinned, 4, 0.1), b = run(FleetScenario::kPinned, 4, 0.1);
  EXPECT_NEAR(a.store_round_trips_per_s, 4 / 0.1, 1);
  EXPECT_EQ(a.window_shares_a, b.window_shares_a);
  EXPECT_EQ(a.store_entries_per_s, b.store_entries_per_s);
}

}  // namespace
}  // namespace tiergate::qos_sim
