// gateway/fleet_sync.*: replicas' queues ordering by what the fleet served, through a real
// redis-server; Redis killed, restarted empty or frozen mid-run: the queues keep working on local
// counters, the degradation shows, and what was served reaches Redis exactly once when it answers.
#include "gateway/fleet_sync.h"

#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "qos/config_parser.h"
#include "tests/gateway/redis_server.h"

namespace tiergate::gateway {
namespace {

using namespace std::chrono_literals;

std::shared_ptr<const qos::Config> gold() {
  auto parsed = qos::parse_config(R"({"enable_user_qos": true, "user_groups": ["Gold"],
      "user_group_map": {"Gold": [{"id": "a", "quota_pct": 50}, {"id": "b", "quota_pct": 50}]}})", "gold.json");
  EXPECT_TRUE(parsed.ok());
  return parsed.config;
}

bool eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 500; ++i) {  // 10 s at most
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

double counter(const qos::AdmissionQueue& queue, const std::string& user) {
  for (const auto& u : queue.usage().users) {
    if (u.user_id == user) return u.virtual_counter;
  }
  return -1;
}

double metric(const FleetSync& sync, const std::string& name) {
  const std::string text = sync.metrics();
  const auto at = text.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + name.size() + 2));
}

double redis_served(RedisConnection& redis, const std::string& user) {
  RedisResult r = redis.command({"HGET", "test:u:4:Gold:" + user, "w"});
  if (r.failure != RedisResult::Failure::kNone) r = redis.command({"HGET", "test:u:4:Gold:" + user, "w"});  // reconnect
  if (r.failure != RedisResult::Failure::kNone || r.replies[0].type != RedisReply::Type::kString) return 0;
  return std::stod(r.replies[0].str);
}

struct Replica {
  qos::AdmissionQueue queue{gold()};
  std::unique_ptr<FleetSync> sync;
  qos::RequestId next_id = 1;

  Replica(const std::string& url, const std::string& id) {
    FleetSyncOptions options;
    options.url = RedisUrl::parse(url);
    options.interval = 20ms;
    options.timeout = 100ms;
    options.replica_id = id;
    options.store.prefix = "test";
    sync = std::make_unique<FleetSync>(options, queue);
  }
  // One request of `user`, admitted, charged `tokens` output tokens, finished.
  void serve(const std::string& user, std::int64_t tokens) {
    const qos::RequestId id = next_id++;
    queue.enqueue({id, user, 1, tokens}, qos::Clock::now());
    auto admitted = queue.next(qos::Clock::now());
    ASSERT_TRUE(admitted.has_value());
    queue.charge(admitted->id, 0, tokens);
    queue.finish(admitted->id);
  }
  double syncs() const { return metric(*sync, "tiergate_fleet_syncs_total"); }
  bool synced_twice() const {  // a sync that began after the caller's last charge has been answered
    const double now = syncs();
    return eventually([&] { return syncs() >= now + 2; });
  }
};

class FleetSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TIERGATE_NEED_REDIS();
    server = std::make_unique<RedisServer>();
    redis = std::make_unique<RedisConnection>(RedisUrl::parse(server->url()), 500ms);
  }
  std::unique_ptr<RedisServer> server;
  std::unique_ptr<RedisConnection> redis;
};

TEST_F(FleetSyncTest, AReplicaOrdersByWhatTheOthersServed) {
  Replica one(server->url(), "one"), two(server->url(), "two");
  two.serve("b", 500);  // 1000 weighted tokens: b's counter 2000, fleet-wide
  one.queue.enqueue({100, "b", 1, 1}, qos::Clock::now());
  one.queue.enqueue({101, "a", 1, 1}, qos::Clock::now());
  ASSERT_TRUE(eventually([&] { return counter(one.queue, "b") == 2000; }));
  EXPECT_EQ(one.queue.next(qos::Clock::now())->user_id, "a");  // alone, it would have been b (first come)
  const std::string health = one.sync->health_json();
  EXPECT_NE(health.find("\"state\": \"ok\""), std::string::npos) << health;
  EXPECT_TRUE(eventually([&] { return one.sync->health_json().find("\"replicas\": 2") != std::string::npos; }));
}

TEST_F(FleetSyncTest, RedisRestartedEmptyMidRunLosesNothingServedSince) {
  Replica one(server->url(), "one");
  one.serve("a", 100);
  ASSERT_TRUE(one.synced_twice());
  ASSERT_EQ(redis_served(*redis, "a"), 200);
  server->stop();
  for (int i = 0; i < 5; ++i) one.serve("a", 10);  // the queue works on: no call waits for Redis
  ASSERT_TRUE(eventually([&] { return one.sync->degraded(); }));
  EXPECT_GT(metric(*one.sync, "tiergate_fleet_sync_failures_total"), 0);
  EXPECT_EQ(metric(*one.sync, "tiergate_fleet_degraded"), 1);
  EXPECT_NE(one.sync->health_json().find("\"state\": \"degraded\""), std::string::npos);
  server->start();
  ASSERT_TRUE(eventually([&] { return !one.sync->degraded(); }));
  one.serve("a", 1);
  ASSERT_TRUE(one.synced_twice());
  // Redis came back empty: it holds what was served since it went away, once; the counter is
  // reseeded from the replica's view, not restarted from zero.
  EXPECT_EQ(redis_served(*redis, "a"), 5 * 20 + 2);
  EXPECT_EQ(counter(one.queue, "a"), (200 + 5 * 20 + 2) / 0.5);
}

TEST_F(FleetSyncTest, AFrozenRedisIsWaitedOutAndNothingIsChargedTwice) {
  Replica one(server->url(), "one");
  one.serve("b", 50);
  server->pause();  // connected but silent: reports may have been folded, so they are resent as they were
  for (int i = 0; i < 5; ++i) one.serve("b", 10);
  ASSERT_TRUE(eventually([&] { return metric(*one.sync, "tiergate_fleet_sync_failures_total") >= 2; }));
  server->resume();
  ASSERT_TRUE(eventually([&] { return !one.sync->degraded(); }));
  one.serve("b", 1);
  ASSERT_TRUE(one.synced_twice());
  EXPECT_EQ(redis_served(*redis, "b"), 100 + 100 + 2);
}

TEST_F(FleetSyncTest, StoppingSendsTheLastCharges) {
  auto one = std::make_unique<Replica>(server->url(), "one");
  one->serve("a", 7);
  one->sync->stop();
  EXPECT_EQ(redis_served(*redis, "a"), 14);
}

}  // namespace
}  // namespace tiergate::gateway
