// qos/fleet_ledger.*: the fleet store's semantics, one rule per test.
#include "qos/fleet_ledger.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tiergate::qos {
namespace {

FleetUserReport entry(const std::string& user, double base, double add, double floor_at = -1e300,
                      double weighted = 0) {
  FleetUserReport u;
  u.group = "Gold";
  u.user = user;
  u.base = base;
  if (floor_at > -1e300) u.op.then_lift(floor_at);
  u.op.then_add(add);
  u.served.weighted_tokens = weighted;
  return u;
}

TEST(FleetLedgerTest, ACounterStartsFromTheReportersBaseThenTakesItsOp) {
  FleetLedger ledger;
  FleetReport report;
  report.users.push_back(entry("a", 100, 20));
  EXPECT_EQ(ledger.apply("r0", 1, report, 0).counters.at(0), 120);
  report.users[0] = entry("a", 0, 5);  // another replica's base no longer matters: the store has one
  EXPECT_EQ(ledger.apply("r1", 1, report, 0).counters.at(0), 125);
}

TEST(FleetLedgerTest, AReportIsFoldedInOncePerReplicaAndSeq) {
  FleetLedger ledger;
  FleetReport report;
  report.users.push_back(entry("a", 0, 10, -1e300, 5));
  ledger.apply("r0", 1, report, 0);
  const FleetUpdate again = ledger.apply("r0", 1, report, 0);
  EXPECT_EQ(again.counters.at(0), 10);
  EXPECT_EQ(ledger.served("Gold", "a").weighted_tokens, 5);
  ledger.apply("r1", 1, report, 0);  // the same seq from another replica is its own report
  EXPECT_EQ(*ledger.counter("Gold", false, "a"), 20);
  ledger.apply("r0", 2, report, 0);
  EXPECT_EQ(*ledger.counter("Gold", false, "a"), 30);
  EXPECT_EQ(ledger.group_served("Gold").weighted_tokens, 15);
  EXPECT_EQ(ledger.reports_folded(), 3u);
}

TEST(FleetLedgerTest, ALiftRaisesToItsFloorWithoutAddingToIt) {
  FleetLedger ledger;
  FleetReport report;
  report.users.push_back(entry("a", 0, 0, 50));
  EXPECT_EQ(ledger.apply("r0", 1, report, 0).counters.at(0), 50);
  EXPECT_EQ(ledger.apply("r1", 1, report, 0).counters.at(0), 50);
}

TEST(FleetLedgerTest, VirtualTimesOnlyRise) {
  FleetLedger ledger;
  FleetReport report;
  report.clocks.push_back({"Gold", false, 30});
  EXPECT_EQ(ledger.apply("r0", 1, report, 0).clocks.at(0).virtual_time, 30);
  report.clocks[0].virtual_time = 10;
  EXPECT_EQ(ledger.apply("r1", 1, report, 0).clocks.at(0).virtual_time, 30);
}

TEST(FleetLedgerTest, AReplicaHearsTheSmallestWaitingCounterOfTheOthers) {
  FleetLedger ledger(5);
  FleetReport report;
  report.clocks.push_back({"Gold", false, 0, 40});
  EXPECT_TRUE(std::isinf(ledger.apply("r0", 1, report, 0).clocks.at(0).others_waiting_floor));
  report.clocks[0].waiting_floor = 70;
  EXPECT_EQ(ledger.apply("r1", 1, report, 1).clocks.at(0).others_waiting_floor, 40);
  report.clocks[0].waiting_floor = 10;
  EXPECT_EQ(ledger.apply("r0", 2, report, 2).clocks.at(0).others_waiting_floor, 70);
  EXPECT_TRUE(std::isinf(ledger.apply("r0", 3, report, 9).clocks.at(0).others_waiting_floor));  // r1 lapsed
}

TEST(FleetLedgerTest, UnknownUsersOfOtherReplicasCountUntilTheirReportsLapse) {
  FleetLedger ledger(5);
  FleetReport report;
  report.loads.push_back({"Silver", 3});
  EXPECT_EQ(ledger.apply("r0", 1, report, 0).others_active_unknown.at(0), 0u);
  report.loads[0].active_unknown = 2;
  EXPECT_EQ(ledger.apply("r1", 1, report, 1).others_active_unknown.at(0), 3u);
  EXPECT_EQ(ledger.apply("r0", 2, report, 4).others_active_unknown.at(0), 2u);
  EXPECT_EQ(ledger.apply("r0", 3, report, 7).others_active_unknown.at(0), 0u);  // r1 silent for 6 s
}

TEST(FleetLedgerTest, FleetWideMinimaAndSumsAreRecomputedOncePerPeriod) {
  FleetLedger ledger(5, 1.0);
  FleetReport report;
  report.clocks.push_back({"Gold", false, 0, 40});
  report.loads.push_back({"Silver", 3});
  ledger.apply("r0", 1, report, 0);  // computed at t = 0 from r0 alone
  report.clocks[0].waiting_floor = 10;
  report.loads[0].active_unknown = 2;
  FleetUpdate cached = ledger.apply("r1", 1, report, 0.5);
  EXPECT_EQ(cached.clocks.at(0).others_waiting_floor, 40);
  EXPECT_EQ(cached.others_active_unknown.at(0), 1u);  // 3 then, less its own 2 now
  FleetUpdate fresh = ledger.apply("r0", 2, report, 1.0);  // a period later: recomputed
  EXPECT_EQ(fresh.clocks.at(0).others_waiting_floor, 10);
  EXPECT_EQ(fresh.others_active_unknown.at(0), 2u);
}

TEST(FleetLedgerTest, ClearedItForgetsEverything) {
  FleetLedger ledger;
  FleetReport report;
  report.users.push_back(entry("a", 0, 10, -1e300, 5));
  ledger.apply("r0", 1, report, 0);
  ledger.clear();
  EXPECT_FALSE(ledger.counter("Gold", false, "a").has_value());
  EXPECT_EQ(ledger.served("Gold", "a").weighted_tokens, 0);
  ledger.apply("r0", 1, report, 0);  // a replica's seq is news to a store that restarted empty
  EXPECT_EQ(*ledger.counter("Gold", false, "a"), 10);
}

}  // namespace
}  // namespace tiergate::qos
