// Interactive sessions kept in Redis for a fleet (a SessionBackend for ChatSessions): reads on the
// calling HTTP thread through one connection, writes on a thread of its own through another, each
// call one Lua script (atomic) bounded by the timeout. Every session key carries the idle TTL, and
// so does each user's index (a sorted set of the user's sessions by last use, in Redis's clock):
// past the per-user cap a write deletes the user's least recently used sessions in the same step,
// so that one tenant cannot fill Redis, whichever replicas its turns land on. Having a TTL also
// makes sessions, and only them, what the shipped Redis (volatile-lru) evicts when full; the fleet's
// counters carry none (gateway/fleet_store.cpp). While Redis does not answer, calls are refused at
// once for a second (then one is tried again), so that requests do not each wait out the timeout.
// Keys live under `prefix`. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "gateway/chat_sessions.h"
#include "gateway/redis_connection.h"

namespace tiergate::gateway {

class RedisSessionStore : public SessionBackend {
 public:
  RedisSessionStore(RedisUrl url, std::chrono::milliseconds timeout, std::string prefix);
  ~RedisSessionStore() override;  // stop()

  Lookup get(const SharedSession& at, std::chrono::seconds ttl, std::string& value) override;
  void put(const SharedSession& at, std::string value, std::chrono::seconds ttl, std::size_t max_per_owner,
           std::function<void()> done) override;
  void erase(const SharedSession& at, std::function<void()> done) override;

  // Writes what is queued (or, past the shutdown, just runs the callbacks) and ends the thread.
  void stop();
  std::uint64_t failures() const;  // Redis calls that failed

 private:
  struct Write {
    const RedisScript* script;
    std::vector<std::string> keys, args;
    std::function<void()> done;
  };
  // Circuit: false while Redis is considered away (no call until `retry_at_`).
  bool may_try(std::chrono::steady_clock::time_point now);
  void record(bool ok, std::chrono::steady_clock::time_point now);
  void enqueue(Write w);
  void run();

  static constexpr std::size_t kMaxQueued = 10000;
  const std::string prefix_;
  std::mutex read_mutex_;
  RedisConnection reader_;     // guarded by read_mutex_
  RedisConnection writer_;     // writer thread only
  mutable std::mutex mutex_;   // guards what follows
  std::condition_variable wake_;
  std::deque<Write> queue_;
  bool stop_ = false;
  std::chrono::steady_clock::time_point retry_at_{};
  std::uint64_t failures_ = 0;
  std::thread thread_;
};

}  // namespace tiergate::gateway
