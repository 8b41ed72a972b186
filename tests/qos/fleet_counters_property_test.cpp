// Properties of fleet-wide fair share (qos/fleet_sync_state.cpp with qos/fleet_ledger.*), under
// random operation sequences on three replicas: enqueue, admit, charge, finish, syncs that succeed
// or lose the report before or after the store saw it, a store restarted empty, and a reload on
// some replicas only (config skew):
//   - nothing charged is lost or charged twice: the fleet's usage equals what the replicas served;
//   - once every replica has synced twice with work waiting everywhere, every replica holds the
//     fleet's counter for every user (they all order alike);
//   - a fleet counter is at least the user's fleet-wide weighted tokens over its share;
//   - one replica syncing alone decides exactly as a queue without fleet sync.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <map>

#include "tests/qos/fleet_test_support.h"

namespace tiergate::qos {
namespace {

const Clock::time_point kT0{};

struct Op {
  int kind;     // 0-2 enqueue, 3-4 admit, 5-6 charge, 7 finish, 8-9 sync, 10 sync lost before,
                // 11 sync lost after, 12 store restarted empty, 13 reload
  int replica;  // 0-2
  int pick;     // user / running request
  int amount;   // tokens
};

// s moves from Silver to Gold (and a's quota changes) in the reloaded config.
std::shared_ptr<const Config> skewed_config() {
  return fleet_config(R"({"enable_user_qos": true,
    "user_groups": ["Gold", "Silver"],
    "user_group_map": {
      "Gold": [{"id": "a", "quota_pct": 50}, {"id": "b", "quota_pct": 50}, {"id": "z", "quota_pct": 0},
               {"id": "s", "quota_pct": 50}],
      "Silver": [{"id": "default", "quota_pct": 100}]}})");
}

const std::vector<std::string> kUsers = {"a", "b", "z", "s", "stranger1", "stranger2", "stranger3"};

struct Running {
  std::size_t replica;
  RequestId id;
  std::string user;
};

struct Fleet {
  FleetLedger ledger;
  std::vector<std::unique_ptr<FleetReplica>> replicas;
  std::vector<Running> running;
  std::map<std::string, FleetServed> charged;  // what the replicas served, per user
  RequestId next_id = 1;
  double now_s = 0;
  bool cleared = false;

  explicit Fleet(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      replicas.push_back(std::make_unique<FleetReplica>("r" + std::to_string(i), fleet_test_config()));
    }
  }
  FleetReplica& r(std::size_t i) { return *replicas[i % replicas.size()]; }

  void run(const Op& op) {
    now_s += 0.01;
    FleetReplica& rep = r(static_cast<std::size_t>(op.replica));
    const std::string& user = kUsers[static_cast<std::size_t>(op.pick) % kUsers.size()];
    const TokenWeights w = rep.queue.config()->weights();
    switch (op.kind) {
      case 0: case 1: case 2:
        rep.queue.enqueue({next_id++, user, op.amount, 10}, kT0);
        break;
      case 3: case 4:
        if (auto a = rep.queue.next(kT0)) {
          running.push_back({static_cast<std::size_t>(op.replica) % replicas.size(), a->id, a->user_id});
          ++charged[a->user_id].requests;
        }
        break;
      case 5: case 6: {
        if (running.empty()) break;
        const Running& run = running[static_cast<std::size_t>(op.pick) % running.size()];
        const std::int64_t prompt = op.amount % 7, output = op.amount % 5;
        r(run.replica).queue.charge(run.id, prompt, output);
        FleetServed& c = charged[run.user];
        c.prompt_tokens += prompt;
        c.output_tokens += output;
        c.weighted_tokens += w.input * static_cast<double>(prompt) + w.output * static_cast<double>(output);
        break;
      }
      case 7: {
        if (running.empty()) break;
        const std::size_t i = static_cast<std::size_t>(op.pick) % running.size();
        r(running[i].replica).queue.finish(running[i].id);
        running.erase(running.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
      case 8: case 9:
        rep.sync(ledger, now_s);
        break;
      case 10:
        rep.sync(ledger, now_s, FleetReplica::Outcome::kLostBefore);
        break;
      case 11:
        rep.sync(ledger, now_s, FleetReplica::Outcome::kLostAfter);
        break;
      case 12:
        ledger.clear();
        cleared = true;
        break;
      case 13:
        rep.queue.reload(skewed_config());
        break;
    }
  }

  // Every running request finishes; every replica syncs until its report is answered.
  void drain() {
    for (const Running& run : running) r(run.replica).queue.finish(run.id);
    running.clear();
    for (auto& rep : replicas) {
      now_s += 0.01;
      rep->sync(ledger, now_s);
      rep->sync(ledger, now_s);  // the first may only have answered an older report
    }
  }

  FleetServed fleet_served(const std::string& user) const {
    FleetServed total = ledger.served("Gold", user);
    total += ledger.served("Silver", user);
    return total;
  }
};

Op random_op(int kinds) {
  return {*rc::gen::inRange(0, kinds), *rc::gen::inRange(0, 3), *rc::gen::inRange(0, 64), *rc::gen::inRange(1, 40)};
}

std::vector<Op> random_ops(int kinds) {
  const int n = *rc::gen::inRange(1, 150);
  std::vector<Op> ops;
  for (int i = 0; i < n; ++i) ops.push_back(random_op(kinds));
  return ops;
}

RC_GTEST_PROP(FleetCountersProperty, NothingServedIsLostOrChargedTwice, ()) {
  Fleet fleet(3);
  for (const Op& op : random_ops(12)) fleet.run(op);  // no restart: the store keeps everything
  fleet.drain();
  for (const std::string& user : kUsers) {
    const FleetServed& want = fleet.charged[user];
    const FleetServed got = fleet.fleet_served(user);
    RC_ASSERT(got.prompt_tokens == want.prompt_tokens);
    RC_ASSERT(got.output_tokens == want.output_tokens);
    RC_ASSERT(got.requests == want.requests);
    RC_ASSERT(std::abs(got.weighted_tokens - want.weighted_tokens) <= 1e-9 * (1 + want.weighted_tokens));
  }
  for (auto& rep : fleet.replicas) RC_ASSERT(rep->queue.fleet_reports_dropped() == 0u);
}

RC_GTEST_PROP(FleetCountersProperty, AfterTwoQuietSyncsEveryReplicaHoldsTheFleetsCounters, ()) {
  Fleet fleet(3);
  for (const Op& op : random_ops(14)) fleet.run(op);  // restarts and config skew included
  fleet.drain();
  for (std::size_t i = 0; i < fleet.replicas.size(); ++i) {
    for (std::size_t u = 0; u < kUsers.size(); ++u) fleet.run({0, static_cast<int>(i), static_cast<int>(u), 1});
  }
  for (int round = 0; round < 2; ++round) {
    for (auto& rep : fleet.replicas) rep->sync(fleet.ledger, fleet.now_s);
  }
  for (auto& rep : fleet.replicas) {
    for (const UserUsage& u : rep->queue.usage().users) {
      if (u.waiting == 0) continue;
      const auto fleet_counter = fleet.ledger.counter(u.group, u.quota_share <= 0, u.user_id);
      RC_ASSERT(fleet_counter.has_value());
      RC_ASSERT(*fleet_counter == u.virtual_counter);
    }
  }
}

RC_GTEST_PROP(FleetCountersProperty, AFleetCounterCoversTheUsersFleetWideServiceOverItsShare, ()) {
  Fleet fleet(3);
  for (const Op& op : random_ops(12)) fleet.run(op);
  fleet.drain();
  for (const std::string& user : {std::string("a"), std::string("b")}) {  // share 0.5 on every replica
    const double served = fleet.charged[user].weighted_tokens;
    const double counter = fleet.ledger.counter("Gold", false, user).value_or(0);
    RC_ASSERT(counter >= served / 0.5 - 1e-9 * (1 + served));
  }
}

RC_GTEST_PROP(FleetCountersProperty, OneReplicaAloneDecidesAsAQueueWithoutFleetSync, ()) {
  // Users whose shares are exact binary fractions, so that both sides compute identical counters.
  const std::vector<std::string> users = {"a", "b", "z", "s"};
  FleetLedger ledger;
  FleetReplica fleet("r0", fleet_test_config());
  AdmissionQueue plain(fleet_test_config());
  std::vector<RequestId> running;
  RequestId next_id = 1;
  const int n = *rc::gen::inRange(1, 200);
  for (int i = 0; i < n; ++i) {
    const Op op = random_op(12);
    const std::string& user = users[static_cast<std::size_t>(op.pick) % users.size()];
    switch (op.kind) {
      case 0: case 1: case 2: {
        const auto a = fleet.queue.enqueue({next_id, user, op.amount, 10}, kT0);
        const auto b = plain.enqueue({next_id++, user, op.amount, 10}, kT0);
        RC_ASSERT(a.status == b.status);
        break;
      }
      case 3: case 4: case 5: {
        const auto a = fleet.queue.next(kT0);
        const auto b = plain.next(kT0);
        RC_ASSERT(a.has_value() == b.has_value());
        if (a) {
          RC_ASSERT(a->id == b->id);
          running.push_back(a->id);
        }
        break;
      }
      case 6: case 7:
        if (!running.empty()) {
          const RequestId id = running[static_cast<std::size_t>(op.pick) % running.size()];
          fleet.queue.charge(id, op.amount % 7, op.amount % 5);
          plain.charge(id, op.amount % 7, op.amount % 5);
        }
        break;
      case 8:
        if (!running.empty()) {
          const std::size_t k = static_cast<std::size_t>(op.pick) % running.size();
          fleet.queue.finish(running[k]);
          plain.finish(running[k]);
          running.erase(running.begin() + static_cast<std::ptrdiff_t>(k));
        }
        break;
      case 9:
        fleet.sync(ledger, i);
        break;
      case 10:
        fleet.sync(ledger, i, FleetReplica::Outcome::kLostBefore);
        break;
      case 11:
        fleet.sync(ledger, i, FleetReplica::Outcome::kLostAfter);
        break;
    }
    const UsageReport got = fleet.queue.usage(), want = plain.usage();
    RC_ASSERT(got.users.size() == want.users.size());
    for (std::size_t u = 0; u < got.users.size(); ++u) {
      RC_ASSERT(got.users[u].user_id == want.users[u].user_id);
      RC_ASSERT(got.users[u].virtual_counter == want.users[u].virtual_counter);
    }
  }
}

}  // namespace
}  // namespace tiergate::qos
