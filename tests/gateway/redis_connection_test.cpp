// gateway/redis_connection.*: --redis-url parsing, and failures told apart (never sent vs no answer).
#include "gateway/redis_connection.h"

#include <gtest/gtest.h>

#include "tests/gateway/redis_server.h"

namespace tiergate::gateway {
namespace {

using namespace std::chrono_literals;

TEST(RedisUrl, ParsesTheUsualForms) {
  RedisUrl u = RedisUrl::parse("redis://127.0.0.1:6380/2");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 6380);
  EXPECT_EQ(u.db, 2);
  u = RedisUrl::parse("redis://redis");
  EXPECT_EQ(u.host, "redis");
  EXPECT_EQ(u.port, 6379);
  EXPECT_EQ(u.db, 0);
  u = RedisUrl::parse("redis://:s3cret@redis.default.svc:6379/0");
  EXPECT_EQ(u.password, "s3cret");
  EXPECT_EQ(u.host, "redis.default.svc");
  EXPECT_EQ(u.describe(), "redis://redis.default.svc:6379/0");  // never the password
}

TEST(RedisUrl, RejectsWhatItCannotUseAndSaysWhy) {
  for (const char* bad : {"http://x", "redis://", "redis://h:port/0", "redis://h:6379/db"}) {
    try {
      RedisUrl::parse(bad);
      ADD_FAILURE() << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("redis://"), std::string::npos) << e.what();
    }
  }
}

TEST(RedisConnection, NoServerMeansNotSent) {
  RedisConnection c(RedisUrl::parse("redis://127.0.0.1:1/0"), 200ms);
  const RedisResult r = c.command({"PING"});
  EXPECT_EQ(r.failure, RedisResult::Failure::kNotSent);
  EXPECT_NE(r.error.find("127.0.0.1:1"), std::string::npos);
}

TEST(RedisConnection, PipelinesAndTellsASilentServerFromAMissingOne) {
  TIERGATE_NEED_REDIS();
  RedisServer server;
  RedisConnection c(RedisUrl::parse(server.url()), 200ms);
  RedisResult r = c.pipeline({{"SET", "k", "v"}, {"GET", "k"}, {"GET", "missing"}});
  ASSERT_EQ(r.failure, RedisResult::Failure::kNone) << r.error;
  ASSERT_EQ(r.replies.size(), 3u);
  EXPECT_EQ(r.replies[1].str, "v");
  EXPECT_EQ(r.replies[2].type, RedisReply::Type::kNil);
  server.pause();  // connected, but no answer within the timeout: it may have run
  EXPECT_EQ(c.command({"INCR", "n"}).failure, RedisResult::Failure::kNoAnswer);
  server.resume();
  EXPECT_EQ(c.command({"PING"}).failure, RedisResult::Failure::kNone);  // reconnected
  server.stop();
  EXPECT_NE(c.command({"PING"}).failure, RedisResult::Failure::kNone);
  EXPECT_EQ(c.command({"PING"}).failure, RedisResult::Failure::kNotSent);
}

}  // namespace
}  // namespace tiergate::gateway
