#include "gateway/redis_connection.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <optional>
#include <stdexcept>

namespace tiergate::gateway {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kForm = "redis://[[user]:password@]host[:port][/db], or rediss:// for TLS";

// The URL as it may be shown: whatever stands before '@' (the password) replaced.
std::string redact(const std::string& url) {
  const auto scheme = url.find("://");
  const auto at = url.rfind('@');
  if (at == std::string::npos || (scheme != std::string::npos && at < scheme)) return url;
  const std::size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  return url.substr(0, start) + "***" + url.substr(at);
}

int parse_int(const std::string& text, const std::string& what, const std::string& url) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) {
    throw std::invalid_argument("--redis-url " + redact(url) + ": the " + what + " '" + text +
                                "' is not a number (expected " + kForm + ")");
  }
  return value;
}

// %XX escapes, so that a password may hold '@', ':' or '/'.
std::string percent_decode(const std::string& text, const std::string& what, const std::string& url) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    unsigned value = 0;
    const char* first = text.data() + i + 1;
    if (i + 2 >= text.size() || std::from_chars(first, first + 2, value, 16).ptr != first + 2) {
      throw std::invalid_argument("--redis-url " + redact(url) + ": the " + what +
                                  " has a '%' that is not followed by two hex digits (write '%25' for '%')");
    }
    out += static_cast<char>(value);
    i += 2;
  }
  return out;
}

RedisReply convert(const redisReply& r) {
  RedisReply out;
  switch (r.type) {
    case REDIS_REPLY_STRING: out.type = RedisReply::Type::kString; break;
    case REDIS_REPLY_STATUS: out.type = RedisReply::Type::kStatus; break;
    case REDIS_REPLY_ERROR: out.type = RedisReply::Type::kError; break;
    case REDIS_REPLY_INTEGER: out.type = RedisReply::Type::kInteger; break;
    case REDIS_REPLY_ARRAY: out.type = RedisReply::Type::kArray; break;
    default: out.type = RedisReply::Type::kNil; break;
  }
  if (r.str) out.str.assign(r.str, r.len);
  out.integer = r.integer;
  for (std::size_t i = 0; i < r.elements; ++i) out.elements.push_back(convert(*r.element[i]));
  return out;
}

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, INT_MAX));
}

// Waits, bounded by the deadline, until `fd` is ready for `events` (or in error: the next call on
// it says which). False at the deadline.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  while (true) {
    const int left = ms_left(deadline);
    if (left == 0) return false;
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, left);
    if (n > 0) return true;
    if (n == 0 || errno != EINTR) return false;
  }
}

int tcp_connect(const std::string& host, int port, Clock::time_point deadline, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0) {
    error = "cannot resolve " + host + ": " + gai_strerror(rc);
    return -1;
  }
  const std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(found, freeaddrinfo);
  for (const addrinfo* a = found; a; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      int so_error = errno;
      if (so_error == EINPROGRESS) {
        so_error = ETIMEDOUT;
        if (wait_for(fd, POLLOUT, deadline)) {
          socklen_t len = sizeof so_error;
          if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
        }
      }
      if (so_error != 0) {
        error = std::string("cannot connect: ") + std::strerror(so_error);
        close(fd);
        continue;
      }
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
  }
  return -1;
}

std::string openssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out;
}

// OpenSSL writes through write(2), which raises SIGPIPE on a connection the server closed; the
// process must not die of it, and the caller's own SIGPIPE handling (if any) must not see it.
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeBlocked() {
    if (!was_pending_) {
      const timespec zero{};
      while (sigtimedwait(&pipe_, nullptr, &zero) > 0) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlocked(const SigpipeBlocked&) = delete;
  SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;

 private:
  sigset_t pipe_, old_;
  bool was_pending_ = false;
};

}  // namespace

struct RedisConnection::Tls {
  SSL_CTX* ctx = nullptr;
  std::string error;  // why there is no ctx
  ~Tls() {
    if (ctx) SSL_CTX_free(ctx);
  }
};

struct RedisConnection::Context {
  int fd = -1;
  SSL* ssl = nullptr;
  redisReader* reader = nullptr;
  ~Context() {
    if (ssl) SSL_free(ssl);  // no close_notify: the socket goes anyway
    if (fd >= 0) close(fd);
    if (reader) redisReaderFree(reader);
  }

  enum class Read { kData, kClosed, kTimeout, kError };

  // False with `error`; `sent` says whether any byte left (then the server may have run something).
  bool send_all(const std::string& bytes, Clock::time_point deadline, bool& sent, std::string& error) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      short want = POLLOUT;
      const std::size_t chunk = std::min<std::size_t>(bytes.size() - done, INT_MAX);
      if (ssl) {
        ERR_clear_error();
        const int n = SSL_write(ssl, bytes.data() + done, static_cast<int>(chunk));
        if (n > 0) {
          done += static_cast<std::size_t>(n);
          sent = true;
          continue;
        }
        const int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_WANT_READ) {
          want = POLLIN;
        } else if (e != SSL_ERROR_WANT_WRITE) {
          sent = true;  // TLS may have passed part of the record on
          error = "TLS write failed: " + openssl_errors();
          return false;
        }
      } else {
        const ssize_t n = send(fd, bytes.data() + done, chunk, MSG_NOSIGNAL);
        if (n > 0) {
          done += static_cast<std::size_t>(n);
          sent = true;
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
          error = std::string("write failed: ") + std::strerror(errno);
          return false;
        }
      }
      if (!wait_for(fd, want, deadline)) {
        error = "timed out writing";
        return false;
      }
    }
    return true;
  }

  // Feeds what the server sent next into `reader`, waiting for it until the deadline.
  Read receive(Clock::time_point deadline, std::string& error) {
    char buf[16384];
    while (true) {
      short want = POLLIN;
      if (ssl) {
        ERR_clear_error();
        const int n = SSL_read(ssl, buf, sizeof buf);
        if (n > 0) {
          redisReaderFeed(reader, buf, static_cast<std::size_t>(n));
          return Read::kData;
        }
        const int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) return Read::kClosed;
        if (e == SSL_ERROR_WANT_WRITE) {
          want = POLLOUT;
        } else if (e != SSL_ERROR_WANT_READ) {
          error = "TLS read failed: " + openssl_errors();
          return Read::kError;
        }
      } else {
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
          redisReaderFeed(reader, buf, static_cast<std::size_t>(n));
          return Read::kData;
        }
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return Read::kClosed;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          error = std::string("read failed: ") + std::strerror(errno);
          return Read::kError;
        }
      }
      if (!wait_for(fd, want, deadline)) return Read::kTimeout;
    }
  }

  // False with `error`; `refused` when the server (or its certificate) turned us away, as opposed
  // to not answering in time.
  bool handshake(SSL_CTX* tls, const std::string& host, Clock::time_point deadline, bool& refused, std::string& error) {
    ssl = SSL_new(tls);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
      error = "cannot set up TLS: " + openssl_errors();
      return false;
    }
    in6_addr ip{};
    const bool is_ip = inet_pton(AF_INET, host.c_str(), &ip) == 1 || inet_pton(AF_INET6, host.c_str(), &ip) == 1;
    if (is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl, host.c_str());
      SSL_set1_host(ssl, host.c_str());
    }
    while (true) {
      ERR_clear_error();
      const int n = SSL_connect(ssl);
      if (n == 1) return true;
      const int e = SSL_get_error(ssl, n);
      short want = 0;
      if (e == SSL_ERROR_WANT_READ) want = POLLIN;
      if (e == SSL_ERROR_WANT_WRITE) want = POLLOUT;
      if (want == 0) {
        refused = true;
        const long verify = SSL_get_verify_result(ssl);
        if (verify != X509_V_OK) {
          error = std::string("TLS: the server's certificate was not accepted: ") + X509_verify_cert_error_string(verify) +
                  " (is it signed by the CA given to --redis-tls-ca-file, and does it name " + host + "?)";
        } else {
          const std::string details = openssl_errors();
          error = "TLS handshake failed: " +
                  (details.empty() ? std::string("the server hung up (is it a TLS port?)") : details);
        }
        return false;
      }
      if (!wait_for(fd, want, deadline)) {
        // What a plain Redis does with a ClientHello, too: it waits for the end of an inline command.
        error = "no answer to the TLS handshake in time (is it a TLS port?)";
        return false;
      }
    }
  }
};

std::string sha1_hex(const std::string& text) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : digest) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

RedisScript::RedisScript(std::string script) : text(std::move(script)), sha1(sha1_hex(text)) {}

RedisUrl RedisUrl::parse(const std::string& url) {
  RedisUrl out;
  std::string rest;
  if (url.rfind("redis://", 0) == 0) {
    rest = url.substr(8);
  } else if (url.rfind("rediss://", 0) == 0) {
    rest = url.substr(9);
    out.tls = true;
  } else {
    throw std::invalid_argument("--redis-url " + redact(url) + ": expected " + kForm);
  }
  if (const auto at = rest.rfind('@'); at != std::string::npos) {
    const std::string auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    if (const auto colon = auth.find(':'); colon != std::string::npos) {
      out.username = percent_decode(auth.substr(0, colon), "user", url);
      out.password = percent_decode(auth.substr(colon + 1), "password", url);
    } else {
      out.password = percent_decode(auth, "password", url);
    }
  }
  if (const auto slash = rest.find('/'); slash != std::string::npos) {
    const std::string db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty()) out.db = parse_int(db, "database", url);
  }
  std::optional<std::string> port;
  if (!rest.empty() && rest[0] == '[') {  // [IPv6]:port
    const auto close = rest.find(']');
    if (close == std::string::npos || (close + 1 < rest.size() && rest[close + 1] != ':')) {
      throw std::invalid_argument("--redis-url " + redact(url) + ": an IPv6 host is written [addr]:port");
    }
    if (close + 1 < rest.size()) port = rest.substr(close + 2);
    rest = rest.substr(1, close - 1);
  } else if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
    port = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  if (port) out.port = parse_int(*port, "port", url);
  if (rest.empty()) throw std::invalid_argument("--redis-url " + redact(url) + ": no host (expected " + kForm + ")");
  out.host = rest;
  return out;
}

std::string RedisUrl::describe() const {
  const std::string shown_host = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return std::string(tls ? "rediss://" : "redis://") + shown_host + ":" + std::to_string(port) + "/" +
         std::to_string(db);
}

RedisConnection::RedisConnection(RedisUrl url, std::chrono::milliseconds timeout)
    : url_(std::move(url)), timeout_(timeout) {
  if (!url_.tls) return;
  tls_ = std::make_unique<Tls>();
  tls_->ctx = SSL_CTX_new(TLS_client_method());
  if (!tls_->ctx) {
    tls_->error = "cannot set up TLS: " + openssl_errors();
    return;
  }
  SSL_CTX_set_min_proto_version(tls_->ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(tls_->ctx, SSL_VERIFY_PEER, nullptr);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
  SSL_CTX_set_options(tls_->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);  // a hang-up is a hang-up, TLS or not
#endif
  const bool loaded = url_.tls_ca_file.empty()
                          ? SSL_CTX_set_default_verify_paths(tls_->ctx) == 1
                          : SSL_CTX_load_verify_locations(tls_->ctx, url_.tls_ca_file.c_str(), nullptr) == 1;
  if (!loaded) {
    tls_->error = url_.tls_ca_file.empty()
                      ? "cannot load the system's CA certificates: " + openssl_errors()
                      : "cannot load the CA certificates of --redis-tls-ca-file " + url_.tls_ca_file + ": " +
                            openssl_errors();
    SSL_CTX_free(tls_->ctx);
    tls_->ctx = nullptr;
  }
}

RedisConnection::~RedisConnection() = default;

void RedisConnection::drop() { context_.reset(); }

bool RedisConnection::connect(RedisResult& failed) {
  failed = RedisResult{};
  failed.failure = RedisResult::Failure::kNotSent;
  const auto deadline = Clock::now() + timeout_;
  if (tls_ && !tls_->ctx) {
    failed.refused = true;
    failed.error = url_.describe() + ": " + tls_->error;
    return false;
  }
  auto context = std::make_unique<Context>();
  std::string error;
  context->fd = tcp_connect(url_.host, url_.port, deadline, error);
  if (context->fd < 0) {
    failed.error = url_.describe() + ": " + error;
    return false;
  }
  if (tls_ && !context->handshake(tls_->ctx, url_.host, deadline, failed.refused, error)) {
    failed.error = url_.describe() + ": " + error;
    return false;
  }
  context->reader = redisReaderCreate();
  context_ = std::move(context);
  answered_since_connect_ = false;
  std::vector<std::vector<std::string>> setup;
  if (!url_.username.empty()) {
    setup.push_back({"AUTH", url_.username, url_.password});
  } else if (!url_.password.empty()) {
    setup.push_back({"AUTH", url_.password});
  }
  if (url_.db != 0) setup.push_back({"SELECT", std::to_string(url_.db)});
  if (setup.empty()) {
    failed = RedisResult{};
    return true;
  }
  RedisResult r;
  round_trip(setup, r);
  if (r.failure != RedisResult::Failure::kNone) {  // nothing of the caller's was sent
    failed.refused = r.refused;
    failed.error = r.error;
    return false;
  }
  for (std::size_t i = 0; i < r.replies.size(); ++i) {
    if (r.replies[i].type == RedisReply::Type::kError) {
      failed.refused = true;
      failed.error = url_.describe() + ": " + setup[i][0] + " refused: " + r.replies[i].str;
      drop();
      return false;
    }
  }
  failed = RedisResult{};
  return true;
}

void RedisConnection::round_trip(const std::vector<std::vector<std::string>>& commands, RedisResult& result) {
  Context& c = *context_;
  std::string out;
  for (const auto& args : commands) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    char* formatted = nullptr;
    const int length = redisFormatCommandArgv(&formatted, static_cast<int>(argv.size()), argv.data(), lengths.data());
    if (length < 0) {
      result.failure = RedisResult::Failure::kNotSent;
      result.error = url_.describe() + ": cannot format a command (out of memory)";
      return;
    }
    out.append(formatted, static_cast<std::size_t>(length));
    redisFreeCommand(formatted);
  }
  const auto deadline = Clock::now() + timeout_;
  auto fail = [&](RedisResult::Failure failure, const std::string& why) {
    result.failure = failure;
    result.error = url_.describe() + ": " + why;
    result.replies.clear();
    drop();
  };
  bool sent = false;
  std::string error;
  if (!c.send_all(out, deadline, sent, error)) {
    return fail(sent ? RedisResult::Failure::kNoAnswer : RedisResult::Failure::kNotSent, error);
  }
  while (result.replies.size() < commands.size()) {
    void* raw = nullptr;
    if (redisReaderGetReply(c.reader, &raw) != REDIS_OK) {
      return fail(RedisResult::Failure::kNoAnswer, std::string("not a Redis answer: ") + c.reader->errstr);
    }
    if (raw) {
      auto* reply = static_cast<redisReply*>(raw);
      result.replies.push_back(convert(*reply));
      freeReplyObject(reply);
      continue;
    }
    switch (c.receive(deadline, error)) {
      case Context::Read::kData: break;
      case Context::Read::kTimeout: return fail(RedisResult::Failure::kNoAnswer, "no answer in time");
      case Context::Read::kError: return fail(RedisResult::Failure::kNoAnswer, error);
      case Context::Read::kClosed:
        if (!answered_since_connect_ && result.replies.empty()) {
          result.refused = true;  // a fresh connection hung up on: not an outage
          return fail(RedisResult::Failure::kNoAnswer,
                      std::string("the server hung up before answering (") +
                          (url_.tls ? "is it a TLS port? rediss:// speaks TLS)"
                                    : "does it want TLS? then use rediss://)"));
        }
        return fail(RedisResult::Failure::kNoAnswer, "the server closed the connection");
    }
  }
  answered_since_connect_ = true;
}

RedisResult RedisConnection::pipeline(const std::vector<std::vector<std::string>>& commands) {
  std::optional<SigpipeBlocked> sigpipe;
  if (tls_) sigpipe.emplace();
  RedisResult result;
  if (!context_ && !connect(result)) return result;
  round_trip(commands, result);
  return result;
}

RedisResult RedisConnection::eval(const RedisScript& script, const std::vector<std::string>& keys,
                                  std::vector<std::string> args) {
  std::vector<std::string> command = {"EVALSHA", script.sha1, std::to_string(keys.size())};
  command.insert(command.end(), keys.begin(), keys.end());
  command.insert(command.end(), std::make_move_iterator(args.begin()), std::make_move_iterator(args.end()));
  RedisResult result = pipeline({command});
  if (result.failure == RedisResult::Failure::kNone && result.replies[0].type == RedisReply::Type::kError &&
      result.replies[0].str.rfind("NOSCRIPT", 0) == 0) {
    // Redis restarted (or was flushed of scripts): nothing ran; load the script and call again.
    result = pipeline({{"SCRIPT", "LOAD", script.text}, command});
    if (result.failure == RedisResult::Failure::kNone) result.replies.erase(result.replies.begin());
  }
  return result;
}

}  // namespace tiergate::gateway
