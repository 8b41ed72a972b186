// Interactive sessions kept in Redis for a fleet (a SessionBackend for ChatSessions): reads on the
// calling HTTP thread through one connection (GETEX, which also renews the TTL), writes on a thread
// of its own through another (SET ... EX, DEL), each call bounded by the timeout. While Redis does
// not answer, calls are refused at once for a second (then one is tried again), so that requests
// do not each wait out the timeout. Keys live under `prefix`. Thread-safe.
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

  Lookup get(const std::string& key, std::chrono::seconds ttl, std::string& value) override;
  void put(const std::string& key, std::string value, std::chrono::seconds ttl, std::function<void()> done) override;
  void erase(const std::string& key, std::function<void()> done) override;

  // Writes what is queued (or, past the shutdown, just runs the callbacks) and ends the thread.
  void stop();
  std::uint64_t failures() const;  // Redis calls that failed

 private:
  struct Write {
    std::vector<std::string> command;
    std::function<void()> done;
  };
  // Circuit: false while Redis is considered away (no call until `retry_at_`).
  bool may_try(std::chrono::steady_clock::time_point now);
  void record(bool ok, std::chrono::steady_clock::time_point now);
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
