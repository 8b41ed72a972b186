// One connection to a Redis server (hiredis, blocking, with a timeout on connect and on every reply),
// for the threads that talk to Redis: the fleet sync and the interactive-session store. Never used
// on the engine thread. Not thread-safe: one owner thread (or the owner's mutex). Failures are
// values: a command that could not be sent (no connection) is told apart from one that was sent
// and never answered (it may have run), so that a caller can resend without double-counting.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace tiergate::gateway {

// redis://[:password@]host[:port][/db]   (host may be a name; port 6379, db 0 by default)
struct RedisUrl {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  std::string password;

  // Throws std::invalid_argument naming what is wrong and the form expected.
  static RedisUrl parse(const std::string& url);
  std::string describe() const;  // the URL without its password
};

struct RedisReply {
  enum class Type { kString, kStatus, kInteger, kNil, kArray, kError } type = Type::kNil;
  std::string str;  // kString, kStatus, kError
  long long integer = 0;
  std::vector<RedisReply> elements;
};

struct RedisResult {
  enum class Failure {
    kNone,      // every command was answered (an answer may still be a Redis error reply)
    kNotSent,   // no connection could be made: nothing ran
    kNoAnswer,  // sent, but the connection failed or timed out before every answer came: it may have run
  } failure = Failure::kNone;
  std::string error;  // with a failure
  std::vector<RedisReply> replies;  // one per command when failure == kNone
};

class RedisConnection {
 public:
  RedisConnection(RedisUrl url, std::chrono::milliseconds timeout);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Sends every command in one write and reads every answer (one round trip), connecting first if
  // needed (AUTH and SELECT included). After kNoAnswer the connection is dropped; the next call
  // reconnects.
  RedisResult pipeline(const std::vector<std::vector<std::string>>& commands);
  RedisResult command(const std::vector<std::string>& args) { return pipeline({args}); }

  const RedisUrl& url() const { return url_; }

 private:
  struct Context;
  bool connect(std::string& error);
  void drop();

  RedisUrl url_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Context> context_;
};

}  // namespace tiergate::gateway
