// One connection to a Redis server, for the threads that talk to Redis: the fleet sync and the
// interactive-session store. Never used on the engine thread. Not thread-safe: one owner thread (or
// the owner's mutex). Plain TCP or TLS (rediss://, OpenSSL: Debian's hiredis 0.14 has no TLS, so
// hiredis only formats commands and parses replies here); a timeout bounds the connect (TLS
// handshake included) and every round trip. Failures are values: a command that could not be sent
// (no connection) is told apart from one that was sent and never answered (it may have run), so
// that a caller can resend without double-counting; and a server that turned us away (password,
// certificate) is told apart from one that is down.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace tiergate::gateway {

// redis[s]://[[user]:password@]host[:port][/db]   (host may be a name; port 6379, db 0 by default;
// user and password percent-decoded). rediss:// is TLS, with the server's certificate checked
// against `tls_ca_file` (or the system's CAs) and its name against `host`.
struct RedisUrl {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  std::string username;  // a Redis 6 ACL user; "" → AUTH with the password alone
  std::string password;
  bool tls = false;
  std::string tls_ca_file;  // not part of the URL: serve's --redis-tls-ca-file

  // Throws std::invalid_argument naming what is wrong and the form expected (never the password).
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
  // With a failure: Redis (or its TLS) turned this client away — AUTH or SELECT refused, the TLS
  // handshake failed, or a fresh connection was hung up on before any answer (TLS spoken to a plain
  // port or the reverse). A URL, password or certificate to fix, not an outage.
  bool refused = false;
  std::string error;  // with a failure; names the server (describe()), never the password
  std::vector<RedisReply> replies;  // one per command when failure == kNone
};

// Lower-case hex SHA-1 of `text` (a script's EVALSHA name, a config's fingerprint).
std::string sha1_hex(const std::string& text);

// A Lua script run by its SHA-1 (EVALSHA), loaded again when Redis has lost it (a restart).
struct RedisScript {
  explicit RedisScript(std::string text);
  std::string text;
  std::string sha1;
};

class RedisConnection {
 public:
  RedisConnection(RedisUrl url, std::chrono::milliseconds timeout);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Sends every command in one write and reads every answer (one round trip), connecting first if
  // needed (TLS, AUTH and SELECT included). After a failure the connection is dropped; the next
  // call reconnects.
  RedisResult pipeline(const std::vector<std::vector<std::string>>& commands);
  RedisResult command(const std::vector<std::string>& args) { return pipeline({args}); }
  // EVALSHA script keys... args...; on NOSCRIPT (nothing ran) loads the script and calls again.
  RedisResult eval(const RedisScript& script, const std::vector<std::string>& keys, std::vector<std::string> args);

  const RedisUrl& url() const { return url_; }

 private:
  struct Context;
  struct Tls;
  bool connect(RedisResult& failed);  // false with `failed` filled in (kNotSent)
  void round_trip(const std::vector<std::vector<std::string>>& commands, RedisResult& result);  // context_ set
  void drop();

  RedisUrl url_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Tls> tls_;  // the TLS settings (CAs loaded once), rediss:// only
  std::unique_ptr<Context> context_;
  bool answered_since_connect_ = false;
};

}  // namespace tiergate::gateway
