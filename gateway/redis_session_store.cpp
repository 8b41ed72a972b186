#include "gateway/redis_session_store.h"

#include <cstdio>

namespace tiergate::gateway {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kBackOff = std::chrono::seconds(1);

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

SessionBackend::Lookup RedisSessionStore::get(const std::string& key, std::chrono::seconds ttl, std::string& value) {
  const auto now = Clock::now();
  if (!may_try(now)) return Lookup::kUnavailable;
  RedisResult r;
  {
    std::lock_guard lock(read_mutex_);
    r = reader_.command({"GETEX", prefix_ + ":" + key, "EX", std::to_string(std::max<long long>(1, ttl.count()))});
  }
  const bool ok = r.failure == RedisResult::Failure::kNone && r.replies[0].type != RedisReply::Type::kError;
  record(ok, Clock::now());
  if (!ok) return Lookup::kUnavailable;
  if (r.replies[0].type != RedisReply::Type::kString) return Lookup::kAbsent;
  value = std::move(r.replies[0].str);
  return Lookup::kFound;
}

void RedisSessionStore::put(const std::string& key, std::string value, std::chrono::seconds ttl,
                            std::function<void()> done) {
  Write w{{"SET", prefix_ + ":" + key, std::move(value), "EX", std::to_string(std::max<long long>(1, ttl.count()))},
          std::move(done)};
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

void RedisSessionStore::erase(const std::string& key, std::function<void()> done) {
  Write w{{"DEL", prefix_ + ":" + key}, std::move(done)};
  {
    std::lock_guard lock(mutex_);
    if (!stop_ && queue_.size() < kMaxQueued) {
      queue_.push_back(std::move(w));
      wake_.notify_one();
      return;
    }
  }
  run_done(w.done);
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
      const RedisResult r = writer_.command(w.command);
      record(r.failure == RedisResult::Failure::kNone && r.replies[0].type != RedisReply::Type::kError, Clock::now());
    }
    run_done(w.done);
    lock.lock();
  }
}

}  // namespace tiergate::gateway
