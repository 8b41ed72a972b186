#include "gateway/chat_sessions.h"

#include <algorithm>

namespace tiergate::gateway {

std::optional<ChatSessions::Conversation> ChatSessions::find(const Key& key, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  expire_idle(now);
  const auto it = sessions_.find(key);
  if (it == sessions_.end()) return std::nullopt;
  touch(it->second, now);
  return it->second.conversation;
}

void ChatSessions::store(const Key& key, Conversation conversation, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  expire_idle(now);
  auto it = sessions_.find(key);
  if (it == sessions_.end()) {
    // Make room first: the least recently used sessions go (lru_'s back).
    while (!sessions_.empty() && sessions_.size() >= limits_.max_sessions) {
      sessions_.erase(lru_.back());
      lru_.pop_back();
      ++expired_;
    }
    if (limits_.max_sessions == 0) return;
    lru_.push_front(key);
    it = sessions_.emplace(key, Entry{{}, now, lru_.begin()}).first;
  }
  it->second.conversation = std::move(conversation);
  touch(it->second, now);
}

void ChatSessions::erase(const Key& key) {
  std::lock_guard lock(mutex_);
  const auto it = sessions_.find(key);
  if (it == sessions_.end()) return;
  lru_.erase(it->second.lru);
  sessions_.erase(it);
}

std::size_t ChatSessions::size() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

std::uint64_t ChatSessions::expired() const {
  std::lock_guard lock(mutex_);
  return expired_;
}

void ChatSessions::touch(Entry& entry, Clock::time_point now) {
  entry.last_used = std::max(entry.last_used, now);
  lru_.splice(lru_.begin(), lru_, entry.lru);
}

void ChatSessions::expire_idle(Clock::time_point now) {
  // lru_ is ordered by last use, so the idle ones are at its back.
  while (!lru_.empty()) {
    const auto it = sessions_.find(lru_.back());
    if (now - it->second.last_used <= limits_.idle_ttl) break;
    sessions_.erase(it);
    lru_.pop_back();
    ++expired_;
  }
}

}  // namespace tiergate::gateway
