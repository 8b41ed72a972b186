#include "gateway/redis_session_store.h"

#include <algorithm>
#include <cstdio>

namespace tiergate::gateway {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kBackOff = std::chrono::seconds(1);

// Each user's index holds the user's sessions scored by last use: Redis's clock in microseconds,
// made strictly increasing within the index so that the order of uses is never a tie.
const std::string kStamp = R"lua(
local function stamp(index)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) >= now then now = tonumber(last[2]) + 1 end
  return now
end
local function fmt(x) return string.format('%.17g', x) end
)lua";

// KEYS: session, owner's index. ARGV: ttl_s. The session's value (nil when absent), touched.
const RedisScript kGet(kStamp + R"lua(
local v = redis.call('GETEX', KEYS[1], 'EX', ARGV[1])
if v then
  redis.call('ZADD', KEYS[2], fmt(stamp(KEYS[2])), KEYS[1])
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return v
)lua");

// KEYS: session, owner's index. ARGV: value, ttl_s, max_per_owner. How many of the owner's other
// sessions went for the cap. An index entry last used longer than the TTL ago is a session Redis
// has already expired.
const RedisScript kPut(kStamp + R"lua(
local ttl, cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = stamp(KEYS[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. fmt(now - ttl * 1000000))
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
redis.call('ZADD', KEYS[2], fmt(now), KEYS[1])
local over = redis.call('ZCARD', KEYS[2]) - cap
local evicted = 0
if over > 0 then
  for _, k in ipairs(redis.call('ZRANGE', KEYS[2], 0, over)) do
    if evicted < over and k ~= KEYS[1] then
      redis.call('DEL', k)
      redis.call('ZREM', KEYS[2], k)
      evicted = evicted + 1
    end
  end
end
redis.call('EXPIRE', KEYS[2], ttl)
return evicted
)lua");

// KEYS: session, owner's index.
const RedisScript kErase(R"lua(
redis.call('ZREM', KEYS[2], KEYS[1])
return redis.call('DEL', KEYS[1])
)lua");

std::string seconds(std::chrono::seconds ttl) { return std::to_string(std::max<long long>(1, ttl.count())); }

void run_done(const std::function<void()>& done) {
  if (!done) return;
  try {
    done();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tiergate: session store: an answer after a write failed: %s\n", e.what());
  }
}

}  // namespace

RedisSessionStore::RedisSessionStore(RedisUrl url, std::chrono::milliseconds timeout, std::string prefix)
    : prefix_(std::move(prefix)), reader_(url, timeout), writer_(url, timeout) {
  thread_ = std::thread([this] { run(); });
}

RedisSessionStore::~RedisSessionStore() { stop(); }

void RedisSessionStore::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::uint64_t RedisSessionStore::failures() const {
  std::lock_guard lock(mutex_);
  return failures_;
}

bool RedisSessionStore::may_try(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  return now >= retry_at_;
}

void RedisSessionStore::record(bool ok, Clock::time_point now) {
  bool first = false;
  {
    std::lock_guard lock(mutex_);
    if (ok) {
      retry_at_ = {};
      return;
    }
    first = retry_at_ == Clock::time_point{};
    retry_at_ = now + kBackOff;
    ++failures_;
  }
  if (first) std::fprintf(stderr, "tiergate: session store: Redis does not answer; sessions are local meanwhile\n");
}

SessionBackend::Lookup RedisSessionStore::get(const SharedSession& at, std::chrono::seconds ttl, std::string& value) {
  const auto now = Clock::now();
  if (!may_try(now)) return Lookup::kUnavailable;
  RedisResult r;
  {
    std::lock_guard lock(read_mutex_);
    r = reader_.eval(kGet, {prefix_ + ":" + at.key, prefix_ + ":" + at.owner}, {seconds(ttl)});
  }
  const bool ok = r.failure == RedisResult::Failure::kNone && r.replies[0].type != RedisReply::Type::kError;
  record(ok, Clock::now());
  if (!ok) return Lookup::kUnavailable;
  if (r.replies[0].type != RedisReply::Type::kString) return Lookup::kAbsent;
  value = std::move(r.replies[0].str);
  return Lookup::kFound;
}

void RedisSessionStore::put(const SharedSession& at, std::string value, std::chrono::seconds ttl,
                            std::size_t max_per_owner, std::function<void()> done) {
  enqueue({&kPut,
           {prefix_ + ":" + at.key, prefix_ + ":" + at.owner},
           {std::move(value), seconds(ttl), std::to_string(max_per_owner)},
           std::move(done)});
}

void RedisSessionStore::erase(const SharedSession& at, std::function<void()> done) {
  enqueue({&kErase, {prefix_ + ":" + at.key, prefix_ + ":" + at.owner}, {}, std::move(done)});
}

void RedisSessionStore::enqueue(Write w) {
  {
    std::lock_guard lock(mutex_);
    if (!stop_ && queue_.size() < kMaxQueued) {
      queue_.push_back(std::move(w));
      wake_.notify_one();
      return;
    }
  }
  run_done(w.done);  // stopping, or far behind: the local copy has it
}

void RedisSessionStore::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping and nothing left
    Write w = std::move(queue_.front());
    queue_.pop_front();
    const bool skip = Clock::now() < retry_at_;
    lock.unlock();
    if (!skip) {
      const RedisResult r = writer_.eval(*w.script, w.keys, std::move(w.args));
      record(r.failure == RedisResult::Failure::kNone && r.replies[0].type != RedisReply::Type::kError, Clock::now());
    }
    run_done(w.done);
    lock.lock();
  }
}

}  // namespace tiergate::gateway
