// Conversations of /v1/chat/interactive_qos, kept server-side between turns (LMDeploy's
// interactive_mode): (user, session_id) → the messages so far and the prompt length they make.
// Bounded so that abandoned sessions cannot grow memory without end and one tenant cannot push out
// another's: a session idle longer than `idle_ttl` is forgotten; a user opening more than
// `max_sessions_per_user` loses its own least recently used one; and past `max_sessions` in all,
// the least recently used session of the user holding the most goes (so a user with few sessions
// is never evicted to make room for a user with many). Alone, in memory only (a restart ends every
// session, as LMDeploy's engine does). With a SessionBackend (a fleet: Redis,
// gateway/redis_session_store.*) the backend holds the sessions, with the same idle TTL and the same
// per-user cap (fleet-wide, not per replica), so that the next turn may land on any replica; the
// local map is then a cache, bounded as above, and the fallback while the backend does not answer. A session is keyed by its user: no other user's turn
// can reach it. Thread-safe; never throws beyond std::bad_alloc.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/chat_template.h"

namespace tiergate::gateway {

// Where a session lives in a SessionBackend: its own key, and the key of its user's index (the
// user's sessions by last use), through which the per-user cap holds fleet-wide.
struct SharedSession {
  std::string key;
  std::string owner;
};

// Sessions shared by the replicas of a fleet. get() blocks, bounded by the backend's own timeout
// (the HTTP threads call it); put() and erase() return at once and call `done` (on the backend's
// thread, or at once) when the write is over, whether it succeeded or not.
class SessionBackend {
 public:
  enum class Lookup { kFound, kAbsent, kUnavailable };
  virtual ~SessionBackend() = default;
  // Touches the session (its TTL and its place in the owner's index).
  virtual Lookup get(const SharedSession& at, std::chrono::seconds ttl, std::string& value) = 0;
  // Stores it; then, in the same atomic step, while its owner holds more than `max_per_owner`
  // sessions, the owner's least recently used other one goes (as ChatSessions' own per-user cap).
  virtual void put(const SharedSession& at, std::string value, std::chrono::seconds ttl, std::size_t max_per_owner,
                   std::function<void()> done) = 0;
  virtual void erase(const SharedSession& at, std::function<void()> done) = 0;
};

class ChatSessions {
 public:
  using Clock = std::chrono::steady_clock;
  using Key = std::pair<std::string, std::int64_t>;  // (user, session_id)

  struct Conversation {
    std::vector<engine::ChatMessage> messages;
    std::size_t tokens = 0;  // prompt tokens of `messages` as last rendered
  };

  struct Limits {
    std::chrono::seconds idle_ttl{1800};
    std::size_t max_sessions = 10000;
    std::size_t max_sessions_per_user = 100;
  };

  explicit ChatSessions(Limits limits, std::shared_ptr<SessionBackend> shared = nullptr)
      : limits_(limits), shared_(std::move(shared)) {}

  // The conversation so far, or nullopt for a new (or expired) session. Touches the session.
  std::optional<Conversation> find(const Key& key, Clock::time_point now = Clock::now());
  // Records a finished turn: the session now holds `conversation` (absent → created). `done` runs
  // once the shared backend has it (at once without one): answer the turn from there, so that the
  // client's next turn, wherever it lands, finds this one.
  void store(const Key& key, Conversation conversation, Clock::time_point now = Clock::now(),
             std::function<void()> done = {});
  // Ends a session (interactive_mode false); no-op when absent. `done` as for store().
  void erase(const Key& key, std::function<void()> done = {});

  // What the shared backend keeps: the key it is stored under, and the value (owner included).
  static std::string shared_key(const Key& key);
  static SharedSession shared_session(const Key& key);  // shared_key and the user's index
  static std::string encode(const Key& key, const Conversation& conversation);
  // nullopt when `value` is not a conversation of `key`'s user and session.
  static std::optional<Conversation> decode(const Key& key, std::string_view value);

  std::size_t size() const;
  std::size_t size_for(const std::string& user) const;
  std::uint64_t expired() const;  // sessions forgotten for idleness or the cap, since start

 private:
  struct Entry {
    Conversation conversation;
    Clock::time_point last_used;
    std::list<Key>::iterator lru;  // position in lru_ (front = most recently used)
  };
  // Take mutex_ themselves:
  void store_local(const Key& key, Conversation conversation, Clock::time_point now);
  void erase_local(const Key& key);
  // Callers hold mutex_.
  void expire_idle(Clock::time_point now);  // forgets sessions idle past the TTL
  void touch(Entry& entry, Clock::time_point now);
  void remove(std::map<Key, Entry>::iterator it);
  void evict_for(const std::string& user);  // makes room for one new session of `user`
  void count_user(const std::string& user, int delta);

  const Limits limits_;
  std::shared_ptr<SessionBackend> shared_;
  mutable std::mutex mutex_;
  std::map<Key, Entry> sessions_;
  std::list<Key> lru_;
  std::map<std::string, std::size_t> per_user_;   // sessions held, users with at least one
  std::map<std::size_t, std::size_t> users_by_count_;  // sessions held → how many users hold that many
  std::uint64_t expired_ = 0;
};

}  // namespace tiergate::gateway
