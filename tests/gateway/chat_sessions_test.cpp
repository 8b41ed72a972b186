#include "gateway/chat_sessions.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <functional>
#include <future>
#include <map>
#include <memory>

#include "gateway/redis_session_store.h"
#include "tests/gateway/redis_server.h"

namespace tiergate::gateway {
namespace {

using Clock = ChatSessions::Clock;
using namespace std::chrono_literals;

ChatSessions::Conversation turn(const std::string& text, std::size_t tokens) {
  return {{{"user", text}, {"assistant", "re: " + text}}, tokens};
}

TEST(ChatSessions, KeepsTheConversationPerUserAndSession) {
  ChatSessions sessions({});
  const auto t0 = Clock::now();
  sessions.store({"alice", 1}, turn("hi", 10), t0);
  sessions.store({"bob", 1}, turn("yo", 7), t0);
  const auto alice = sessions.find({"alice", 1}, t0 + 1s);
  ASSERT_TRUE(alice);
  EXPECT_EQ(alice->messages.front().content, "hi");
  EXPECT_EQ(alice->tokens, 10u);
  EXPECT_EQ(sessions.find({"bob", 1}, t0 + 1s)->tokens, 7u);
  EXPECT_FALSE(sessions.find({"alice", 2}, t0 + 1s));
  sessions.erase({"alice", 1});
  EXPECT_FALSE(sessions.find({"alice", 1}, t0 + 2s));
  EXPECT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions.expired(), 0u);  // ended on request, not expired
}

TEST(ChatSessions, ForgetsSessionsIdleLongerThanTheTtl) {
  ChatSessions sessions({.idle_ttl = 60s, .max_sessions = 100});
  const auto t0 = Clock::now();
  sessions.store({"alice", 1}, turn("hi", 10), t0);
  sessions.store({"bob", 1}, turn("yo", 7), t0);
  EXPECT_TRUE(sessions.find({"alice", 1}, t0 + 50s));  // a look keeps a session alive
  EXPECT_TRUE(sessions.find({"alice", 1}, t0 + 100s));
  EXPECT_FALSE(sessions.find({"bob", 1}, t0 + 100s));
  EXPECT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions.expired(), 1u);
}

TEST(ChatSessions, BeyondTheCapTheLeastRecentlyUsedGoes) {
  ChatSessions sessions({.idle_ttl = 3600s, .max_sessions = 2});
  const auto t0 = Clock::now();
  sessions.store({"a", 1}, turn("1", 1), t0);
  sessions.store({"b", 1}, turn("2", 2), t0 + 1s);
  ASSERT_TRUE(sessions.find({"a", 1}, t0 + 2s));  // b is now the least recently used
  sessions.store({"c", 1}, turn("3", 3), t0 + 3s);
  EXPECT_TRUE(sessions.find({"a", 1}, t0 + 4s));
  EXPECT_FALSE(sessions.find({"b", 1}, t0 + 4s));
  EXPECT_TRUE(sessions.find({"c", 1}, t0 + 4s));
  EXPECT_EQ(sessions.size(), 2u);
  sessions.store({"a", 1}, turn("1 again", 5), t0 + 5s);  // an update takes no new room
  EXPECT_EQ(sessions.size(), 2u);
  EXPECT_EQ(sessions.expired(), 1u);
}

TEST(ChatSessions, ACapOfZeroKeepsNothing) {
  ChatSessions sessions({.idle_ttl = 60s, .max_sessions = 0});
  sessions.store({"a", 1}, turn("1", 1));
  EXPECT_EQ(sessions.size(), 0u);
  EXPECT_FALSE(sessions.find({"a", 1}));
}

// A shared backend in memory, as Redis would hold it for the fleet's replicas.
struct FakeBackend : SessionBackend {
  std::map<std::string, std::string> values;
  bool up = true;
  std::vector<std::function<void()>> writes;  // done callbacks not yet run (the write is in flight)
  Lookup get(const SharedSession& at, std::chrono::seconds, std::string& value) override {
    if (!up) return Lookup::kUnavailable;
    auto it = values.find(at.key);
    if (it == values.end()) return Lookup::kAbsent;
    value = it->second;
    return Lookup::kFound;
  }
  void put(const SharedSession& at, std::string value, std::chrono::seconds, std::size_t,
           std::function<void()> done) override {
    if (up) values[at.key] = std::move(value);
    writes.push_back(std::move(done));
  }
  void erase(const SharedSession& at, std::function<void()> done) override {
    if (up) values.erase(at.key);
    writes.push_back(std::move(done));
  }
};

TEST(ChatSessions, AConversationRoundTripsThroughItsSharedForm) {
  const ChatSessions::Key key{"alice \"a\"", 7};
  ChatSessions::Conversation c{{{"user", "héllo\n"}, {"assistant", "{\"json\": 1}"}}, 42};
  const auto back = ChatSessions::decode(key, ChatSessions::encode(key, c));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->tokens, 42u);
  ASSERT_EQ(back->messages.size(), 2u);
  EXPECT_EQ(back->messages[0].content, "héllo\n");
  EXPECT_EQ(back->messages[1].content, "{\"json\": 1}");
  // Another user's (or session's) value is never taken for this one, nor a damaged one.
  EXPECT_FALSE(ChatSessions::decode({"bob", 7}, ChatSessions::encode(key, c)));
  EXPECT_FALSE(ChatSessions::decode({"alice \"a\"", 8}, ChatSessions::encode(key, c)));
  EXPECT_FALSE(ChatSessions::decode(key, "{not json"));
  EXPECT_NE(ChatSessions::shared_key({"a:1", 2}), ChatSessions::shared_key({"a", 12}));
}

TEST(ChatSessions, WithASharedBackendTheNextTurnFindsWhatAnotherReplicaStored) {
  auto shared = std::make_shared<FakeBackend>();
  ChatSessions here({}, shared), there({}, shared);
  bool answered = false;
  there.store({"alice", 1}, turn("hi", 10), Clock::now(), [&] { answered = true; });
  EXPECT_FALSE(answered);  // the turn is answered once the write is over
  for (auto& done : shared->writes) done();
  EXPECT_TRUE(answered);
  ASSERT_TRUE(here.find({"alice", 1}));
  EXPECT_EQ(here.find({"alice", 1})->tokens, 10u);
  EXPECT_FALSE(here.find({"bob", 1}));
  // Redis away: what this replica saw last.
  shared->up = false;
  EXPECT_EQ(here.find({"alice", 1})->tokens, 10u);
  // Ended on another replica: gone here too, not served from the local copy.
  shared->up = true;
  there.erase({"alice", 1});
  EXPECT_FALSE(here.find({"alice", 1}));
}

TEST(ChatSessions, WithoutABackendDoneRunsAtOnce) {
  ChatSessions sessions({});
  int calls = 0;
  sessions.store({"a", 1}, turn("x", 1), Clock::now(), [&] { ++calls; });
  sessions.erase({"a", 1}, [&] { ++calls; });
  EXPECT_EQ(calls, 2);
}

// Issue 11, hole 9: one tenant opening session after session must not push out the others'.
TEST(ChatSessions, ATenantOpeningManySessionsEvictsOnlyItsOwn) {
  ChatSessions sessions({.idle_ttl = 3600s, .max_sessions = 10});
  const auto t0 = Clock::now();
  sessions.store({"bob", 1}, turn("mine", 3), t0);
  sessions.store({"carol", 1}, turn("mine too", 4), t0);
  for (int i = 0; i < 1000; ++i) sessions.store({"mallory", i}, turn("spam", 1), t0 + 1s + std::chrono::milliseconds(i));
  EXPECT_TRUE(sessions.find({"bob", 1}, t0 + 10s));
  EXPECT_TRUE(sessions.find({"carol", 1}, t0 + 10s));
  EXPECT_EQ(sessions.size(), 10u);
  EXPECT_TRUE(sessions.find({"mallory", 999}, t0 + 10s));  // its newest survive, its oldest went
  EXPECT_FALSE(sessions.find({"mallory", 0}, t0 + 10s));
}

TEST(ChatSessions, APerUserCapKeepsEachUsersNewestSessions) {
  ChatSessions sessions({.idle_ttl = 3600s, .max_sessions = 100, .max_sessions_per_user = 3});
  const auto t0 = Clock::now();
  for (int i = 0; i < 5; ++i) sessions.store({"alice", i}, turn("t", 1), t0 + std::chrono::seconds(i));
  sessions.store({"bob", 0}, turn("t", 1), t0 + 10s);
  EXPECT_EQ(sessions.size_for("alice"), 3u);
  EXPECT_EQ(sessions.size_for("bob"), 1u);
  EXPECT_FALSE(sessions.find({"alice", 1}, t0 + 11s));
  EXPECT_TRUE(sessions.find({"alice", 2}, t0 + 11s));
  EXPECT_TRUE(sessions.find({"alice", 4}, t0 + 11s));
  EXPECT_EQ(sessions.expired(), 2u);
}

// Issue 23, hole 1: the per-user cap holds in Redis, fleet-wide, not only in each replica's cache.
class RedisSessionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TIERGATE_NEED_REDIS();
    server = std::make_unique<RedisServer>();
    redis = std::make_unique<RedisConnection>(RedisUrl::parse(server->url()), 2000ms);
  }
  std::shared_ptr<RedisSessionStore> store() {
    return std::make_shared<RedisSessionStore>(RedisUrl::parse(server->url()), 2000ms, "test");
  }
  // Stores a turn and waits (bounded) until Redis has it, as the route answers only then.
  static void store_and_wait(ChatSessions& sessions, const ChatSessions::Key& key) {
    std::promise<void> written;
    sessions.store(key, turn("t", 1), Clock::now(), [&] { written.set_value(); });
    ASSERT_EQ(written.get_future().wait_for(10s), std::future_status::ready) << "the Redis write never finished";
  }
  bool in_redis(const ChatSessions::Key& key) {
    const RedisResult r = redis->command({"EXISTS", "test:" + ChatSessions::shared_key(key)});
    EXPECT_EQ(r.failure, RedisResult::Failure::kNone) << r.error;
    return r.failure == RedisResult::Failure::kNone && r.replies[0].integer == 1;
  }
  std::unique_ptr<RedisServer> server;
  std::unique_ptr<RedisConnection> redis;
};

TEST_F(RedisSessionsTest, AUsersCapHoldsAcrossReplicasAndEvictsItsLeastRecentlyUsed) {
  const ChatSessions::Limits limits{.idle_ttl = 3600s, .max_sessions = 100, .max_sessions_per_user = 3};
  ChatSessions one(limits, store()), two(limits, store());
  store_and_wait(one, {"bob", 0});
  store_and_wait(one, {"alice", 0});
  store_and_wait(one, {"alice", 1});
  store_and_wait(two, {"alice", 2});  // each replica alone holds fewer than 3 of alice's
  ASSERT_TRUE(two.find({"alice", 0}));  // used again: now alice's least recently used is 1
  store_and_wait(two, {"alice", 3});
  store_and_wait(one, {"alice", 4});
  EXPECT_FALSE(in_redis({"alice", 1}));
  EXPECT_FALSE(in_redis({"alice", 2}));
  EXPECT_TRUE(in_redis({"alice", 0}));
  EXPECT_TRUE(in_redis({"alice", 3}));
  EXPECT_TRUE(in_redis({"alice", 4}));
  EXPECT_TRUE(in_redis({"bob", 0}));  // another tenant's session is never taken for alice's
  // The replica that still caches alice's session 1 learns it is gone.
  EXPECT_FALSE(one.find({"alice", 1}));
  // Sessions carry the idle TTL (what a volatile-lru Redis may evict), and so does alice's index.
  for (const std::string& key : {"test:" + ChatSessions::shared_key({"alice", 0}),
                                "test:" + ChatSessions::shared_session({"alice", 0}).owner}) {
    const RedisResult ttl = redis->command({"TTL", key});
    ASSERT_EQ(ttl.failure, RedisResult::Failure::kNone);
    EXPECT_GT(ttl.replies[0].integer, 3000) << key;
  }
  // An ended session leaves the index: alice may open another without losing one.
  std::promise<void> erased;
  one.erase({"alice", 3}, [&] { erased.set_value(); });
  ASSERT_EQ(erased.get_future().wait_for(10s), std::future_status::ready);
  store_and_wait(two, {"alice", 5});
  EXPECT_TRUE(in_redis({"alice", 0}));
  EXPECT_TRUE(in_redis({"alice", 4}));
  EXPECT_TRUE(in_redis({"alice", 5}));
}

// Against a plain model (a map with last-use times; past a user's cap its oldest session goes,
// past the total cap the oldest session of a user holding the most): any sequence of stores,
// finds, erases and clock advances gives the same answers, the store never holds more than either
// cap, and nothing idle past the TTL is ever returned.
RC_GTEST_PROP(ChatSessions, BehavesLikeAnLruMapWithIdleExpiry, ()) {
  const auto ttl = std::chrono::seconds(*rc::gen::inRange(1, 50));
  const auto cap = static_cast<std::size_t>(*rc::gen::inRange(1, 6));
  const auto user_cap = static_cast<std::size_t>(*rc::gen::inRange(1, 5));
  ChatSessions sessions({.idle_ttl = ttl, .max_sessions = cap, .max_sessions_per_user = user_cap});
  struct ModelEntry {
    std::size_t tokens;
    Clock::time_point last_used;
    std::uint64_t order;  // breaks ties between equal times: later touch = more recent
  };
  std::map<ChatSessions::Key, ModelEntry> model;
  std::uint64_t order = 0;
  auto now = Clock::now();
  const auto expire = [&] {
    std::erase_if(model, [&](const auto& kv) { return now - kv.second.last_used > ttl; });
  };
  const int steps = *rc::gen::inRange(1, 200);
  for (int i = 0; i < steps; ++i) {
    now += std::chrono::seconds(*rc::gen::inRange(0, 20));
    const ChatSessions::Key key{std::string(1, static_cast<char>('a' + *rc::gen::inRange(0, 4))),
                                *rc::gen::inRange(0, 3)};
    const int op = *rc::gen::inRange(0, 3);
    expire();
    if (op == 0) {
      const auto tokens = static_cast<std::size_t>(*rc::gen::inRange(0, 1000));
      sessions.store(key, turn("t", tokens), now);
      if (!model.count(key)) {
        auto held = [&](const std::string& user) {
          return static_cast<std::size_t>(std::count_if(model.begin(), model.end(),
                                                        [&](const auto& kv) { return kv.first.first == user; }));
        };
        auto evict_oldest = [&](auto eligible) {
          auto victim = model.end();
          for (auto it = model.begin(); it != model.end(); ++it) {
            if (eligible(it->first) && (victim == model.end() || it->second.order < victim->second.order)) victim = it;
          }
          model.erase(victim);
        };
        if (held(key.first) >= user_cap) evict_oldest([&](const auto& k) { return k.first == key.first; });
        while (model.size() >= cap) {
          std::size_t most = 0;
          for (const auto& kv : model) most = std::max(most, held(kv.first.first));
          evict_oldest([&](const auto& k) { return held(k.first) == most; });
        }
      }
      model[key] = {tokens, now, ++order};
    } else if (op == 1) {
      const auto got = sessions.find(key, now);
      const auto it = model.find(key);
      RC_ASSERT(got.has_value() == (it != model.end()));
      if (got) {
        RC_ASSERT(got->tokens == it->second.tokens);
        RC_ASSERT(now - it->second.last_used <= ttl);
        it->second = {it->second.tokens, now, ++order};
      }
    } else {
      sessions.erase(key);
      model.erase(key);
    }
    RC_ASSERT(sessions.size() <= cap);
    if (op != 2) RC_ASSERT(sessions.size() == model.size());  // find and store expire idle sessions first
    for (char u = 'a'; u < 'e'; ++u) RC_ASSERT(sessions.size_for(std::string(1, u)) <= user_cap);
  }
}

}  // namespace
}  // namespace tiergate::gateway
