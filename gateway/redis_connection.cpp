#include "gateway/redis_connection.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <charconv>
#include <stdexcept>

namespace tiergate::gateway {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
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

int parse_int(const std::string& text, const std::string& what, const std::string& url) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) {
    throw std::invalid_argument("--redis-url " + url + ": the " + what + " '" + text +
                                "' is not a number (expected redis://[:password@]host[:port][/db])");
  }
  return value;
}

}  // namespace

struct RedisConnection::Context {
  redisContext* ctx = nullptr;
  ~Context() {
    if (ctx) redisFree(ctx);
  }
};

RedisUrl RedisUrl::parse(const std::string& url) {
  const std::string scheme = "redis://";
  if (url.rfind(scheme, 0) != 0) {
    throw std::invalid_argument("--redis-url " + url + ": expected redis://[:password@]host[:port][/db]");
  }
  RedisUrl out;
  std::string rest = url.substr(scheme.size());
  if (const auto at = rest.rfind('@'); at != std::string::npos) {
    std::string auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    if (const auto colon = auth.find(':'); colon != std::string::npos) auth = auth.substr(colon + 1);
    out.password = auth;
  }
  if (const auto slash = rest.find('/'); slash != std::string::npos) {
    const std::string db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty()) out.db = parse_int(db, "database", url);
  }
  if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
    out.port = parse_int(rest.substr(colon + 1), "port", url);
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) throw std::invalid_argument("--redis-url " + url + ": no host (expected redis://host:port/db)");
  out.host = rest;
  return out;
}

std::string RedisUrl::describe() const {
  return "redis://" + host + ":" + std::to_string(port) + "/" + std::to_string(db);
}

RedisConnection::RedisConnection(RedisUrl url, std::chrono::milliseconds timeout)
    : url_(std::move(url)), timeout_(timeout) {}

RedisConnection::~RedisConnection() = default;

void RedisConnection::drop() { context_.reset(); }

bool RedisConnection::connect(std::string& error) {
  auto context = std::make_unique<Context>();
  context->ctx = redisConnectWithTimeout(url_.host.c_str(), url_.port, to_timeval(timeout_));
  if (!context->ctx || context->ctx->err) {
    error = context->ctx ? context->ctx->errstr : "cannot allocate a Redis context";
    return false;
  }
  redisSetTimeout(context->ctx, to_timeval(timeout_));
  context_ = std::move(context);
  std::vector<std::vector<std::string>> setup;
  if (!url_.password.empty()) setup.push_back({"AUTH", url_.password});
  if (url_.db != 0) setup.push_back({"SELECT", std::to_string(url_.db)});
  if (setup.empty()) return true;
  const RedisResult r = pipeline(setup);  // context_ is set: no recursion into connect
  if (r.failure != RedisResult::Failure::kNone) {
    error = r.error;
    drop();
    return false;
  }
  for (const RedisReply& reply : r.replies) {
    if (reply.type == RedisReply::Type::kError) {
      error = reply.str;
      drop();
      return false;
    }
  }
  return true;
}

RedisResult RedisConnection::pipeline(const std::vector<std::vector<std::string>>& commands) {
  RedisResult result;
  if (!context_) {
    std::string error;
    if (!connect(error)) {
      result.failure = RedisResult::Failure::kNotSent;
      result.error = url_.describe() + ": " + error;
      return result;
    }
  }
  redisContext* c = context_->ctx;
  for (const auto& args : commands) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    if (redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lengths.data()) != REDIS_OK) {
      result.failure = RedisResult::Failure::kNotSent;  // only buffered so far: nothing left
      result.error = url_.describe() + ": " + c->errstr;
      drop();
      return result;
    }
  }
  for (std::size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr) {
      result.failure = RedisResult::Failure::kNoAnswer;
      result.error = url_.describe() + ": " + (c->errstr[0] ? c->errstr : "no answer");
      result.replies.clear();
      drop();
      return result;
    }
    auto* reply = static_cast<redisReply*>(raw);
    result.replies.push_back(convert(*reply));
    freeReplyObject(reply);
  }
  return result;
}

}  // namespace tiergate::gateway
