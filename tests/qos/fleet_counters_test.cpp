// qos/fleet_counters.h and the queue's side of it (qos/fleet_sync_state.cpp): one behaviour per
// test, replicas sharing an in-memory FleetLedger (tests/qos/fleet_test_support.h).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "qos/fleet_counters.h"
#include "tests/qos/fleet_test_support.h"

namespace tiergate::qos {
namespace {

const Clock::time_point kT0{};
constexpr double kInf = std::numeric_limits<double>::infinity();

class FleetCountersTest : public ::testing::Test {
 protected:
  FleetLedger ledger;
  std::vector<std::unique_ptr<FleetReplica>> replicas;
  RequestId next_id = 1;
  double now_s = 0;

  FleetReplica& replica(std::size_t i) {
    while (replicas.size() <= i) {
      replicas.push_back(std::make_unique<FleetReplica>("r" + std::to_string(replicas.size()), fleet_test_config()));
    }
    return *replicas[i];
  }
  RequestId add(std::size_t r, const std::string& user, std::int64_t prompt = 10) {
    const RequestId id = next_id++;
    EXPECT_EQ(replica(r).queue.enqueue({id, user, prompt, 10}, kT0).status, EnqueueStatus::kQueued) << user;
    return id;
  }
  // Admits replica r's next request, charges it `tokens` output tokens and finishes it.
  std::string serve(std::size_t r, std::int64_t tokens) {
    auto admission = replica(r).queue.next(kT0);
    if (!admission) return "<none>";
    replica(r).queue.charge(admission->id, 0, tokens);
    replica(r).queue.finish(admission->id);
    return admission->user_id;
  }
  void sync_all(FleetReplica::Outcome outcome = FleetReplica::Outcome::kOk) {
    now_s += 0.05;
    for (auto& r : replicas) r->sync(ledger, now_s, outcome);
  }
};

TEST(CounterOpTest, ChargesAddAndLiftsRaiseToTheirFloor) {
  CounterOp op;
  EXPECT_TRUE(op.identity());
  EXPECT_EQ(op.apply(7), 7);
  op.then_add(3);
  op.then_lift(20);
  op.then_add(5);
  // max(max(x + 3, 20) + 5): a counter below the floor lands on it, one above keeps its lead.
  EXPECT_EQ(op.apply(0), 25);
  EXPECT_EQ(op.apply(30), 38);
  EXPECT_FALSE(op.identity());
}

TEST(CounterOpTest, ComposedOpsApplyLikeTheSequence) {
  CounterOp first, second;
  first.then_add(4);
  first.then_lift(10);
  second.then_lift(12);
  second.then_add(1);
  CounterOp both = first;
  both.then(second);
  for (double x : {-5.0, 0.0, 6.0, 8.0, 11.0, 100.0}) EXPECT_EQ(both.apply(x), second.apply(first.apply(x))) << x;
}

TEST(CounterOpTest, ALiftTwiceIsALiftOnce) {
  CounterOp op;
  op.then_lift(10);
  op.then_lift(10);
  EXPECT_EQ(op.apply(3), 10);
  EXPECT_EQ(op.floor, 10);
  EXPECT_EQ(CounterOp{}.floor, -kInf);
}

TEST_F(FleetCountersTest, WithoutFleetSyncTheQueueReportsNothing) {
  AdmissionQueue queue(fleet_test_config());
  queue.enqueue({1, "a", 10, 10}, kT0);
  auto admission = queue.next(kT0);
  queue.charge(admission->id, 10, 10);
  const FleetReport report = queue.take_fleet_report();
  EXPECT_TRUE(report.users.empty());
  EXPECT_TRUE(report.clocks.empty());
}

TEST_F(FleetCountersTest, OrderInsideAGroupFollowsWhatTheWholeFleetServed) {
  // b is served 1000 weighted tokens on replica 1; on replica 0, a and b both wait.
  add(1, "b");
  EXPECT_EQ(serve(1, 500), "b");
  add(0, "b");
  add(0, "a");
  sync_all();
  sync_all();
  EXPECT_EQ(replica(0).counter("b"), 2000);  // 1000 weighted tokens / share 0.5
  // Alone, replica 0 would admit b first (older request, equal counters); the fleet says a is owed.
  EXPECT_EQ(serve(0, 10), "a");
}

TEST_F(FleetCountersTest, ChargesMadeWhileAReportIsOutStayOnTopOfTheFleetsAnswer) {
  add(0, "a");
  auto admission = replica(0).queue.next(kT0);
  replica(0).queue.charge(admission->id, 0, 100);  // 200 weighted → counter 400
  const FleetReport report = replica(0).queue.take_fleet_report();
  replica(0).queue.charge(admission->id, 0, 50);  // while the report is in flight: +200
  const FleetUpdate update = ledger.apply("r0", 1, report, 0);
  replica(0).queue.apply_fleet_update(report, update);
  replica(0).seq = 1;
  EXPECT_EQ(update.counters.at(0), 400);
  EXPECT_EQ(replica(0).counter("a"), 600);
  sync_all();
  EXPECT_EQ(ledger.counter("Gold", false, "a"), 600);
  EXPECT_EQ(replica(0).counter("a"), 600);
}

TEST_F(FleetCountersTest, AReportResentAfterItsAnswerWasLostIsChargedOnce) {
  add(0, "a");
  serve(0, 100);
  replica(0).sync(ledger, 0.05, FleetReplica::Outcome::kLostAfter);  // folded in, answer lost
  replica(0).sync(ledger, 0.10, FleetReplica::Outcome::kLostBefore);  // may have been folded: kept
  replica(0).sync(ledger, 0.15);                                      // resent: same seq
  EXPECT_EQ(ledger.served("Gold", "a").weighted_tokens, 200);
  EXPECT_EQ(ledger.counter("Gold", false, "a"), 400);
  EXPECT_EQ(replica(0).counter("a"), 400);
}

TEST_F(FleetCountersTest, AReportThatNeverArrivedGoesOutAgainWithLaterCharges) {
  add(0, "a");
  serve(0, 100);
  replica(0).sync(ledger, 0.05, FleetReplica::Outcome::kLostBefore);
  add(0, "a");
  serve(0, 50);
  replica(0).sync(ledger, 0.10);
  EXPECT_EQ(ledger.served("Gold", "a").weighted_tokens, 300);
  EXPECT_EQ(ledger.served("Gold", "a").requests, 2u);
  EXPECT_EQ(ledger.counter("Gold", false, "a"), 600);
}

TEST_F(FleetCountersTest, AUserLiftedOnTwoReplicasAtOnceIsLiftedOnce) {
  // a has a lead of 1000 (counter 2000); b idle at 0 comes back on both replicas.
  add(0, "a");
  serve(0, 500);
  add(0, "a");
  add(1, "a");
  sync_all();
  sync_all();
  ASSERT_EQ(replica(1).counter("a"), 2000);
  add(0, "b");
  add(1, "b");
  sync_all();
  EXPECT_EQ(ledger.counter("Gold", false, "b"), 2000);  // not 4000: max(·, floor) twice is once
  EXPECT_EQ(replica(0).counter("b"), 2000);
  EXPECT_EQ(replica(1).counter("b"), 2000);
}

TEST_F(FleetCountersTest, IdleTimeBanksNoCreditFleetWide) {
  // While b is away, a is served 1000 weighted tokens on replica 0. b comes back on replica 1, where
  // no Gold user has waited since: the fleet's virtual time lifts it, not replica 1's own.
  AdmissionQueue alone(fleet_test_config());  // the same on a replica without fleet sync
  for (AdmissionQueue* q : {&replica(1).queue, &alone}) {
    q->enqueue({next_id, "b", 10, 10}, kT0);
    q->charge(q->next(kT0)->id, 0, 10);
    q->finish(next_id++);
  }
  for (int i = 0; i < 10; ++i) {
    add(0, "a");
    serve(0, 50);
  }
  sync_all();
  add(1, "b");
  alone.enqueue({next_id++, "b", 10, 10}, kT0);
  EXPECT_EQ(replica(1).counter("b"), 1800);  // the counter a was last admitted at, fleet-wide
  EXPECT_EQ(alone.usage().users.at(0).virtual_counter, 40);  // its own 20 weighted tokens / 0.5
}

TEST_F(FleetCountersTest, ADroppedUnknownUsersLastChargesStillReachTheFleet) {
  add(0, "stranger");
  serve(0, 40);  // idle, with a debt: its account stays until the group's clock passes it
  add(0, "other");
  serve(0, 100);
  add(0, "other");
  serve(0, 1);  // admitted at counter 400: the clock passes the stranger's 160, its account goes
  ASSERT_EQ(replica(0).counter("stranger"), -1);
  sync_all();
  EXPECT_EQ(ledger.served("Silver", "stranger").weighted_tokens, 80);
  EXPECT_EQ(ledger.counter("Silver", false, "stranger"), 160);
}

TEST_F(FleetCountersTest, TheDefaultShareIsSplitAmongTheFleetsUnknownUsers) {
  add(0, "u0");
  for (int i = 1; i <= 3; ++i) add(1, "u" + std::to_string(i));
  sync_all();
  sync_all();  // replica 0 reported first: it hears of replica 1's users in the second round
  // Replica 0 sees one unknown user of its own and three elsewhere: u0's share is 0.5 / 4.
  auto admission = replica(0).queue.next(kT0);
  ASSERT_EQ(admission->user_id, "u0");
  const double before = replica(0).counter("u0");
  replica(0).queue.charge(admission->id, 0, 10);
  EXPECT_DOUBLE_EQ(replica(0).counter("u0") - before, 20 / (0.5 / 4));
}

TEST_F(FleetCountersTest, AStoreRestartedEmptyIsReseededFromTheReplicas) {
  for (std::size_t r : {0, 0, 1, 1}) add(r, "a");  // one request stays waiting on each replica
  serve(0, 100);
  serve(1, 100);
  sync_all();
  sync_all();
  ASSERT_EQ(*ledger.counter("Gold", false, "a"), 800);
  ledger.clear();
  serve(0, 50);
  sync_all();
  // Replica 0 seeds the counter from the fleet value it last saw; replica 1 adds on top. Only the
  // usage totals restart from zero.
  EXPECT_EQ(*ledger.counter("Gold", false, "a"), 1000);
  EXPECT_EQ(ledger.served("Gold", "a").weighted_tokens, 100);
  EXPECT_EQ(replica(0).counter("a"), 1000);
  sync_all();
  EXPECT_EQ(replica(1).counter("a"), 1000);
}

TEST_F(FleetCountersTest, AReloadThatMovesAUserStartsItsCountersInTheNewGroup) {
  add(0, "s");
  serve(0, 100);  // 200 weighted in Silver at share 0.5
  add(0, "a");
  serve(0, 300);
  replica(0).queue.reload(fleet_config(R"({"enable_user_qos": true, "user_groups": ["Gold", "Silver"],
    "user_group_map": {"Gold": [{"id": "a", "quota_pct": 50}, {"id": "s", "quota_pct": 50}],
                       "Silver": [{"id": "default", "quota_pct": 100}]}})"));
  sync_all();
  EXPECT_EQ(ledger.served("Silver", "s").weighted_tokens, 200);  // charged before the move
  EXPECT_EQ(ledger.counter("Silver", false, "s"), 400);
  EXPECT_EQ(ledger.counter("Gold", false, "s"), replica(0).counter("s"));
  EXPECT_EQ(ledger.counter("Gold", false, "a"), 1200);
}

TEST_F(FleetCountersTest, ScavengerAndQuotaCountersAreKeptApart) {
  add(0, "z");
  serve(0, 100);
  sync_all();
  EXPECT_TRUE(ledger.counter("Gold", true, "z").has_value());
  EXPECT_FALSE(ledger.counter("Gold", false, "z").has_value());
}

}  // namespace
}  // namespace tiergate::qos
