// gateway/redis_connection.*: --redis-url parsing, and failures told apart (never sent vs no answer,
// down vs turned away); AUTH and TLS against real redis-servers (issue 23), and serve's start-up
// check of them (gateway/fleet_flags.*).
#include "gateway/redis_connection.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "gateway/fleet_flags.h"
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

TEST(RedisUrl, ParsesTlsUsersEscapesAndIpv6) {
  RedisUrl u = RedisUrl::parse("rediss://app:p%40ss%3Aw%2Fd@redis.tiergate.svc:6380/1");
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.username, "app");
  EXPECT_EQ(u.password, "p@ss:w/d");
  EXPECT_EQ(u.host, "redis.tiergate.svc");
  EXPECT_EQ(u.port, 6380);
  EXPECT_EQ(u.db, 1);
  EXPECT_EQ(u.describe(), "rediss://redis.tiergate.svc:6380/1");
  u = RedisUrl::parse("redis://[::1]:7000");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 7000);
  EXPECT_EQ(u.describe(), "redis://[::1]:7000/0");
  EXPECT_FALSE(RedisUrl::parse("redis://h").tls);
}

TEST(RedisUrl, AnErrorNeverShowsThePassword) {
  for (const char* bad : {"redis://:hunter2@h:port/0", "redis://:hunter2@h:6379/db", "http://:hunter2@h",
                          "redis://:hunter2%zz@h", "redis://:hunter2@"}) {
    try {
      RedisUrl::parse(bad);
      ADD_FAILURE() << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).find("hunter2"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("--redis-url"), std::string::npos) << e.what();
    }
  }
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

// serve's fleet flags as the command line gives them; throws CliError as serve would.
std::optional<FleetSyncOptions> serve_flags(std::vector<std::string> args) {
  return fleet_options(CliArgs(args, kFleetFlags, {}));
}

std::string cli_error(std::vector<std::string> args) {
  try {
    serve_flags(std::move(args));
  } catch (const CliError& e) {
    return e.what();
  }
  return "";
}

TEST(RedisConnection, AuthWithThePasswordOfTheUrl) {
  TIERGATE_NEED_REDIS();
  RedisServer server({.password = "s3cret-pw"});
  const std::string with_password = "redis://:s3cret-pw@127.0.0.1:" + std::to_string(server.port()) + "/0";
  RedisConnection good(RedisUrl::parse(with_password), 1000ms);
  RedisResult r = good.pipeline({{"SET", "k", "v"}, {"GET", "k"}});
  ASSERT_EQ(r.failure, RedisResult::Failure::kNone) << r.error;
  EXPECT_EQ(r.replies[1].str, "v");
  // A wrong password: turned away (not an outage), said without the password.
  RedisConnection bad(RedisUrl::parse("redis://:wrong-pw@127.0.0.1:" + std::to_string(server.port()) + "/0"), 1000ms);
  r = bad.command({"PING"});
  EXPECT_EQ(r.failure, RedisResult::Failure::kNotSent);
  EXPECT_TRUE(r.refused);
  EXPECT_NE(r.error.find("AUTH refused"), std::string::npos) << r.error;
  EXPECT_EQ(r.error.find("wrong-pw"), std::string::npos) << r.error;
  // No password at all: Redis answers NOAUTH.
  RedisConnection none(RedisUrl::parse(server.url()), 1000ms);
  r = none.command({"PING"});
  ASSERT_EQ(r.failure, RedisResult::Failure::kNone) << r.error;
  EXPECT_EQ(r.replies[0].type, RedisReply::Type::kError);
}

TEST(FleetFlags, AWrongOrMissingRedisPasswordFailsStartUpNamingTheFlag) {
  TIERGATE_NEED_REDIS();
  RedisServer server({.password = "s3cret-pw"});
  const std::string port = std::to_string(server.port());
  std::string error = cli_error({"--redis-url", "redis://:wrong-pw@127.0.0.1:" + port + "/0"});
  EXPECT_NE(error.find("--redis-url redis://127.0.0.1:" + port + "/0"), std::string::npos) << error;
  EXPECT_NE(error.find("AUTH"), std::string::npos) << error;
  EXPECT_EQ(error.find("wrong-pw"), std::string::npos) << error;
  error = cli_error({"--redis-url", server.url()});
  EXPECT_NE(error.find("NOAUTH"), std::string::npos) << error;
  EXPECT_NE(error.find("TIERGATE_REDIS_PASSWORD"), std::string::npos) << error;
  // The password from the environment, for a URL without one (a Kubernetes Secret as an env var).
  setenv("TIERGATE_REDIS_PASSWORD", "s3cret-pw", 1);
  const auto options = serve_flags({"--redis-url", server.url()});
  unsetenv("TIERGATE_REDIS_PASSWORD");
  ASSERT_TRUE(options);
  EXPECT_EQ(options->url.password, "s3cret-pw");
  // A Redis that is not up yet is no reason not to start (the replica serves on local counters).
  server.stop();
  EXPECT_TRUE(serve_flags({"--redis-url", "redis://:s3cret-pw@127.0.0.1:" + port + "/0"}));
}

class RedisTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TIERGATE_NEED_REDIS();
    dir = std::filesystem::temp_directory_path() / ("tiergate-redis-tls-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    ASSERT_TRUE(make_test_certificate(dir, "redis")) << "openssl could not make a test certificate";
    ASSERT_TRUE(make_test_certificate(dir, "other"));
    ca = (dir / "redis.crt").string();
    server = std::make_unique<RedisServer>(
        RedisServer::Options{.password = "s3cret-pw", .tls_cert = ca, .tls_key = (dir / "redis.key").string()});
    ASSERT_TRUE(server->running()) << "redis-server did not start with --tls-port (built without TLS?)";
  }
  void TearDown() override {
    server.reset();
    std::filesystem::remove_all(dir);
  }
  RedisUrl url(const std::string& scheme, const std::string& ca_file) const {
    RedisUrl u = RedisUrl::parse(scheme + "://:s3cret-pw@127.0.0.1:" + std::to_string(server->port()) + "/0");
    u.tls_ca_file = ca_file;
    return u;
  }
  std::filesystem::path dir;
  std::string ca;
  std::unique_ptr<RedisServer> server;
};

TEST_F(RedisTlsTest, RedissTalksTlsCheckingTheCertificate) {
  RedisConnection c(url("rediss", ca), 2000ms);
  RedisResult r = c.pipeline({{"SET", "k", std::string(100000, 'x')}, {"STRLEN", "k"}});  // more than one record
  ASSERT_EQ(r.failure, RedisResult::Failure::kNone) << r.error;
  EXPECT_EQ(r.replies[1].integer, 100000);
  r = c.command({"GET", "k"});
  ASSERT_EQ(r.failure, RedisResult::Failure::kNone) << r.error;
  EXPECT_EQ(r.replies[0].str.size(), 100000u);
  server->pause();  // connected, never answering: no answer, not turned away
  r = c.command({"PING"});
  EXPECT_EQ(r.failure, RedisResult::Failure::kNoAnswer);
  EXPECT_FALSE(r.refused);
  server->resume();
  EXPECT_EQ(c.command({"PING"}).failure, RedisResult::Failure::kNone);  // reconnected
}

TEST_F(RedisTlsTest, ACertificateOfAnotherCaOrTheWrongSchemeIsTurnedAway) {
  RedisConnection untrusted(url("rediss", (dir / "other.crt").string()), 2000ms);
  RedisResult r = untrusted.command({"PING"});
  EXPECT_EQ(r.failure, RedisResult::Failure::kNotSent);
  EXPECT_TRUE(r.refused);
  EXPECT_NE(r.error.find("certificate"), std::string::npos) << r.error;
  // Plain text to the TLS port: Redis hangs up.
  RedisConnection plain(url("redis", ""), 2000ms);
  r = plain.command({"PING"});
  EXPECT_NE(r.failure, RedisResult::Failure::kNone);
  EXPECT_TRUE(r.refused) << r.error;
  EXPECT_NE(r.error.find("rediss://"), std::string::npos) << r.error;
  EXPECT_EQ(r.error.find("s3cret-pw"), std::string::npos) << r.error;
  // A CA file that is not there.
  RedisConnection missing(url("rediss", (dir / "nope.crt").string()), 2000ms);
  r = missing.command({"PING"});
  EXPECT_TRUE(r.refused);
  EXPECT_NE(r.error.find("--redis-tls-ca-file"), std::string::npos) << r.error;
}

TEST_F(RedisTlsTest, StartUpFailsOnATlsMismatchAndNamesTheFlag) {
  const std::string port = std::to_string(server->port());
  EXPECT_TRUE(serve_flags({"--redis-url", "rediss://:s3cret-pw@127.0.0.1:" + port + "/0", "--redis-tls-ca-file", ca}));
  std::string error = cli_error({"--redis-url", "rediss://:s3cret-pw@127.0.0.1:" + port + "/0", "--redis-tls-ca-file",
                                 (dir / "other.crt").string()});
  EXPECT_NE(error.find("--redis-url rediss://127.0.0.1:" + port), std::string::npos) << error;
  EXPECT_NE(error.find("certificate"), std::string::npos) << error;
  error = cli_error({"--redis-url", "redis://:s3cret-pw@127.0.0.1:" + port + "/0"});
  EXPECT_NE(error.find("--redis-url redis://127.0.0.1:" + port), std::string::npos) << error;
  EXPECT_EQ(error.find("s3cret-pw"), std::string::npos) << error;
  EXPECT_NE(cli_error({"--redis-url", "redis://127.0.0.1:" + port, "--redis-tls-ca-file", ca}).find("rediss://"),
            std::string::npos);
}

// A plain Redis takes a ClientHello for the start of an inline command and waits for its end: that
// looks like a Redis too slow to answer, so it is not "turned away", but the error says what to check.
TEST(RedisConnection, RedissToAPlainPortSaysSo) {
  TIERGATE_NEED_REDIS();
  RedisServer server;
  RedisConnection c(RedisUrl::parse("rediss://127.0.0.1:" + std::to_string(server.port()) + "/0"), 300ms);
  const RedisResult r = c.command({"PING"});
  EXPECT_EQ(r.failure, RedisResult::Failure::kNotSent);
  EXPECT_NE(r.error.find("TLS port"), std::string::npos) << r.error;
}

}  // namespace
}  // namespace tiergate::gateway
