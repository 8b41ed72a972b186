// gateway/fleet_store.*: the Redis script does what qos::FleetLedger (the semantics the queue's
// tests rely on) does, report for report, on random reports from three replicas, resends included;
// it survives a Redis that lost its scripts or all its data; the usage read sums what was served.
#include "gateway/fleet_store.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <cmath>
#include <future>
#include <random>
#include <thread>

#include "gateway/redis_session_store.h"

#include "qos/config_parser.h"
#include "qos/fleet_ledger.h"
#include "tests/gateway/redis_server.h"

namespace tiergate::gateway {
namespace {

using namespace std::chrono_literals;

qos::FleetReport random_report(std::mt19937_64& random) {
  auto pick = [&](int n) { return static_cast<int>(random() % static_cast<std::uint64_t>(n)); };
  const std::vector<std::string> groups = {"Gold", "Silver", "we:ird group"};
  const std::vector<std::string> users = {"a", "b", "c:d", "ünï"};
  qos::FleetReport report;
  for (int n = pick(6); n > 0; --n) {
    qos::FleetUserReport u;
    u.group = groups[static_cast<std::size_t>(pick(3))];
    u.scavenger = pick(4) == 0;
    u.user = users[static_cast<std::size_t>(pick(4))];
    u.base = pick(1000) / 7.0;
    if (pick(3) == 0) u.op.then_lift(pick(2000) / 3.0);
    u.op.then_add(pick(500) / 0.3);
    if (pick(2)) u.op.then_lift(pick(3000) / 3.0);
    u.served.weighted_tokens = pick(100) * 1.5;
    u.served.prompt_tokens = pick(50);
    u.served.output_tokens = pick(50);
    u.served.requests = static_cast<std::uint64_t>(pick(2));
    report.users.push_back(u);
  }
  for (const std::string& g : groups) {
    for (bool scav : {false, true}) {
      report.clocks.push_back({g, scav, pick(3000) / 7.0,
                               pick(3) == 0 ? std::numeric_limits<double>::infinity() : pick(3000) / 11.0});
    }
    report.loads.push_back({g, static_cast<std::size_t>(pick(5))});
  }
  return report;
}

class FleetStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TIERGATE_NEED_REDIS();
    server = std::make_unique<RedisServer>();
    redis = std::make_unique<RedisConnection>(RedisUrl::parse(server->url()), 1000ms);
    FleetStoreOptions options;
    options.prefix = "test";
    options.aggregate_every_s = 0;  // exact, as the ledger's default
    store = std::make_unique<FleetStore>(*redis, options);
  }
  std::unique_ptr<RedisServer> server;
  std::unique_ptr<RedisConnection> redis;
  std::unique_ptr<FleetStore> store;
};

void expect_same(const qos::FleetUpdate& want, const FleetAnswer& got, int step) {
  ASSERT_EQ(got.failure, RedisResult::Failure::kNone) << got.error;
  ASSERT_EQ(want.counters.size(), got.update.counters.size());
  for (std::size_t i = 0; i < want.counters.size(); ++i) EXPECT_EQ(want.counters[i], got.update.counters[i]) << step;
  ASSERT_EQ(want.clocks.size(), got.update.clocks.size());
  for (std::size_t i = 0; i < want.clocks.size(); ++i) {
    EXPECT_EQ(want.clocks[i].virtual_time, got.update.clocks[i].virtual_time) << step;
    EXPECT_EQ(want.clocks[i].others_waiting_floor, got.update.clocks[i].others_waiting_floor) << step;
  }
  EXPECT_EQ(want.others_active_unknown, got.update.others_active_unknown) << step;
}

TEST_F(FleetStoreTest, TheScriptFoldsReportsInAsTheLedgerDoes) {
  qos::FleetLedger ledger(1e9);
  std::mt19937_64 random(7);
  std::uint64_t seq[3] = {0, 0, 0};
  qos::FleetReport last[3];
  for (int step = 0; step < 300; ++step) {
    const std::size_t r = random() % 3;
    const std::string id = "replica-" + std::to_string(r);
    const bool resend = seq[r] > 0 && random() % 4 == 0;  // an answer lost: the same report again
    if (!resend) {
      last[r] = random_report(random);
      ++seq[r];
    }
    const qos::FleetUpdate want = ledger.apply(id, seq[r], last[r], 0);
    expect_same(want, store->sync(id, seq[r], last[r], "cfg"), step);
  }
}

TEST_F(FleetStoreTest, ScriptsLostByRedisAreLoadedAgain) {
  std::mt19937_64 random(1);
  const qos::FleetReport report = random_report(random);
  ASSERT_EQ(store->sync("r", 1, report, "cfg").failure, RedisResult::Failure::kNone);
  ASSERT_EQ(redis->command({"SCRIPT", "FLUSH"}).failure, RedisResult::Failure::kNone);
  EXPECT_EQ(store->sync("r", 2, report, "cfg").failure, RedisResult::Failure::kNone);
}

TEST_F(FleetStoreTest, ARedisRestartedEmptyIsReseededFromTheReport) {
  qos::FleetReport report;
  qos::FleetUserReport u;
  u.group = "Gold";
  u.user = "a";
  u.op.then_add(10);
  report.users.push_back(u);
  EXPECT_EQ(store->sync("r", 1, report, "cfg").update.counters.at(0), 10);
  server->stop();
  EXPECT_NE(store->sync("r", 2, report, "cfg").failure, RedisResult::Failure::kNone);
  server->start();
  report.users[0].base = 500;  // the replica's last fleet value
  const FleetAnswer answer = store->sync("r", 2, report, "cfg");
  ASSERT_EQ(answer.failure, RedisResult::Failure::kNone) << answer.error;
  EXPECT_EQ(answer.update.counters.at(0), 510);
}

TEST_F(FleetStoreTest, UsageSumsWhatEveryReplicaServedAndListsTheReplicas) {
  auto parsed = qos::parse_config(R"({"enable_user_qos": true, "user_groups": ["Gold", "Silver"],
      "user_group_map": {"Gold": [{"id": "a", "quota_pct": 50}, {"id": "b", "quota_pct": 50}],
                         "Silver": [{"id": "default", "quota_pct": 100}]}})", "t.json");
  ASSERT_TRUE(parsed.ok());
  auto entry = [](const std::string& group, const std::string& user, double w) {
    qos::FleetUserReport u;
    u.group = group;
    u.user = user;
    u.served = {w, 1, 2, 1};
    return u;
  };
  qos::FleetReport one, two;
  one.users = {entry("Gold", "a", 30), entry("Silver", "stranger", 5)};
  two.users = {entry("Gold", "a", 10), entry("Gold", "b", 20)};
  store->sync("r1", 1, one, "aaa");
  store->sync("r2", 1, two, "bbb");
  store->sync("r2", 1, two, "bbb");  // resent: not counted twice
  const FleetUsage usage = store->read_usage(*parsed.config);
  ASSERT_EQ(usage.failure, RedisResult::Failure::kNone) << usage.error;
  ASSERT_EQ(usage.groups.size(), 2u);
  EXPECT_EQ(usage.groups[0].served.weighted_tokens, 60);
  EXPECT_EQ(usage.groups[0].users.at(0).served.weighted_tokens, 40);
  EXPECT_EQ(usage.groups[0].users.at(0).served.requests, 2u);
  EXPECT_EQ(usage.groups[0].users.at(1).served.weighted_tokens, 20);
  EXPECT_EQ(usage.groups[1].served.weighted_tokens, 5);  // unknown users: in the group's total
  EXPECT_EQ(usage.replicas.size(), 2u);
  const FleetAnswer answer = store->sync("r1", 2, {}, "aaa");
  EXPECT_EQ(answer.replicas, 2u);
  EXPECT_EQ(answer.config_versions, 2u);  // "aaa" and "bbb": the configs differ
}

qos::FleetReport one_user(const std::string& user, double add) {
  qos::FleetReport report;
  qos::FleetUserReport u;
  u.group = "Gold";
  u.user = user;
  u.op.then_add(add);
  u.served = {add, 1, 1, 1};
  report.users.push_back(u);
  report.clocks.push_back({"Gold", false, 1, std::numeric_limits<double>::infinity()});
  report.loads.push_back({"Gold", 1});
  return report;
}

std::vector<std::string> keys(RedisConnection& redis, const std::string& pattern) {
  const RedisResult r = redis.command({"KEYS", pattern});
  std::vector<std::string> out;
  if (r.failure == RedisResult::Failure::kNone) {
    for (const RedisReply& k : r.replies[0].elements) out.push_back(k.str);
  }
  return out;
}

bool is_session_key(const std::string& key) {
  return key.rfind("test:s:", 0) == 0 || key.rfind("test:so:", 0) == 0;
}

// Issue 23, hole 1: under the shipped volatile-lru policy Redis evicts only keys with a TTL, so the
// fleet's counters carry none (interactive sessions do): a tenant filling Redis with sessions evicts
// sessions, never another tenant's fair-share debt.
TEST(FleetStoreEviction, SessionsFillingRedisNeverEvictTheCounters) {
  TIERGATE_NEED_REDIS();
  RedisServer server({.extra = {"--maxmemory", "4mb", "--maxmemory-policy", "volatile-lru"}});
  RedisConnection redis(RedisUrl::parse(server.url()), 2000ms);
  FleetStore store(redis, {.prefix = "test"});
  for (int u = 0; u < 20; ++u) {
    const FleetAnswer answer = store.sync("r", static_cast<std::uint64_t>(u + 1), one_user("user" + std::to_string(u), 100), "cfg");
    ASSERT_EQ(answer.failure, RedisResult::Failure::kNone) << answer.error;
  }
  const std::vector<std::string> fleet_keys = keys(redis, "test:*");
  ASSERT_GT(fleet_keys.size(), 20u);
  for (const std::string& key : fleet_keys) {
    const RedisResult ttl = redis.command({"TTL", key});
    EXPECT_EQ(ttl.replies.at(0).integer, -1) << key << " carries a TTL: volatile-lru may evict it";
  }
  // 16 MB of sessions (64 KiB each, one per user: no per-user cap helps) into a 4 MB Redis.
  RedisSessionStore sessions(RedisUrl::parse(server.url()), 2000ms, "test");
  for (int i = 0; i < 256; ++i) {
    const ChatSessions::Key key{"tenant" + std::to_string(i), 1};
    std::promise<void> written;
    sessions.put(ChatSessions::shared_session(key), std::string(64 * 1024, 'x'), 3600s, 100, [&] { written.set_value(); });
    ASSERT_EQ(written.get_future().wait_for(10s), std::future_status::ready);
  }
  EXPECT_LT(keys(redis, "test:s:*").size(), 256u);  // memory ran out: sessions were evicted
  for (const std::string& key : keys(redis, "test:*")) {
    if (is_session_key(key)) {
      EXPECT_GT(redis.command({"TTL", key}).replies.at(0).integer, 0) << key;
    }
  }
  std::vector<std::string> left;
  for (const std::string& key : keys(redis, "test:*")) {
    if (!is_session_key(key)) left.push_back(key);
  }
  std::sort(left.begin(), left.end());
  std::vector<std::string> before = fleet_keys;
  std::sort(before.begin(), before.end());
  EXPECT_EQ(left, before);  // every counter is still there
  const FleetAnswer answer = store.sync("r", 100, one_user("user0", 1), "cfg");
  ASSERT_EQ(answer.failure, RedisResult::Failure::kNone) << answer.error;
  EXPECT_EQ(answer.update.counters.at(0), 101);  // user0's debt survived
}

// Without a TTL, idle users are still forgotten after user_ttl: by the script itself.
TEST_F(FleetStoreTest, AnIdleUsersCountersAreForgottenWithoutARedisTtl) {
  FleetStore short_lived(*redis, {.prefix = "test", .user_ttl = 1s});
  ASSERT_EQ(short_lived.sync("r", 1, one_user("idle", 10), "cfg").failure, RedisResult::Failure::kNone);
  const std::string user_key = "test:u:4:Gold:idle";
  ASSERT_EQ(redis->command({"EXISTS", user_key}).replies.at(0).integer, 1);
  EXPECT_EQ(redis->command({"TTL", user_key}).replies.at(0).integer, -1);
  std::uint64_t seq = 1;
  bool forgotten = false;
  for (int i = 0; i < 100 && !forgotten; ++i) {  // 10 s at most
    std::this_thread::sleep_for(100ms);
    ASSERT_EQ(short_lived.sync("r", ++seq, one_user("busy", 1), "cfg").failure, RedisResult::Failure::kNone);
    forgotten = redis->command({"EXISTS", user_key}).replies.at(0).integer == 0;
  }
  EXPECT_TRUE(forgotten) << user_key << " outlived user_ttl";
  EXPECT_EQ(redis->command({"EXISTS", "test:u:4:Gold:busy"}).replies.at(0).integer, 1);
  // Reseeded from the replica's view if it comes back (as after a Redis restart).
  qos::FleetReport back = one_user("idle", 5);
  back.users[0].base = 50;
  EXPECT_EQ(short_lived.sync("r", ++seq, back, "cfg").update.counters.at(0), 55);
}

TEST(ConfigFingerprint, EqualConfigsAgreeAndDifferentOnesDiffer) {
  auto a = qos::parse_config(R"({"enable_user_qos": true, "user_groups": ["G"], "user_group_map": {"G": [{"id": "x", "quota_pct": 50}]}})", "a");
  auto b = qos::parse_config(R"({"enable_user_qos": true, "user_groups": ["G"],
      "user_group_map": {"G": [{"id": "x", "quota_pct": 50}]}})", "b");
  auto c = qos::parse_config(R"({"enable_user_qos": true, "user_groups": ["G"], "user_group_map": {"G": [{"id": "x", "quota_pct": 60}]}})", "c");
  EXPECT_EQ(config_fingerprint(*a.config), config_fingerprint(*b.config));
  EXPECT_NE(config_fingerprint(*a.config), config_fingerprint(*c.config));
}

}  // namespace
}  // namespace tiergate::gateway
