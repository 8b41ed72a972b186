// Conversations of /v1/chat/interactive_qos, kept server-side between turns (LMDeploy's
// interactive_mode): (user, session_id) → the messages so far and the prompt length they make.
// Bounded so that abandoned sessions cannot grow memory without end and one tenant cannot push out
// another's: a session idle longer than `idle_ttl` is forgotten; a user opening more than
// `max_sessions_per_user` loses its own least recently used one; and past `max_sessions` in all,
// the least recently used session of the user holding the most goes (so a user with few sessions
// is never evicted to make room for a user with many). In memory only (a restart ends every
// session, as LMDeploy's engine does). Thread-safe; never throws beyond std::bad_alloc.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/chat_template.h"

namespace tiergate::gateway {

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

  explicit ChatSessions(Limits limits) : limits_(limits) {}

  // The conversation so far, or nullopt for a new (or expired) session. Touches the session.
  std::optional<Conversation> find(const Key& key, Clock::time_point now = Clock::now());
  // Records a finished turn: the session now holds `conversation` (absent → created).
  void store(const Key& key, Conversation conversation, Clock::time_point now = Clock::now());
  // Ends a session (interactive_mode false); no-op when absent.
  void erase(const Key& key);

  std::size_t size() const;
  std::size_t size_for(const std::string& user) const;
  std::uint64_t expired() const;  // sessions forgotten for idleness or the cap, since start

 private:
  struct Entry {
    Conversation conversation;
    Clock::time_point last_used;
    std::list<Key>::iterator lru;  // position in lru_ (front = most recently used)
  };
  // Callers hold mutex_.
  void expire_idle(Clock::time_point now);  // forgets sessions idle past the TTL
  void touch(Entry& entry, Clock::time_point now);
  void remove(std::map<Key, Entry>::iterator it);
  void evict_for(const std::string& user);  // makes room for one new session of `user`
  void count_user(const std::string& user, int delta);

  const Limits limits_;
  mutable std::mutex mutex_;
  std::map<Key, Entry> sessions_;
  std::list<Key> lru_;
  std::map<std::string, std::size_t> per_user_;   // sessions held, users with at least one
  std::map<std::size_t, std::size_t> users_by_count_;  // sessions held → how many users hold that many
  std::uint64_t expired_ = 0;
};

}  // namespace tiergate::gateway
