#include "gateway/chat_sessions.h"

#include <simdjson.h>

#include <algorithm>

#include "qos/config_writer.h"

namespace tiergate::gateway {

std::string ChatSessions::shared_key(const Key& key) {
  // Length-prefixed, so that no user id can reach into another user's sessions.
  return "s:" + std::to_string(key.first.size()) + ":" + key.first + ":" + std::to_string(key.second);
}

SharedSession ChatSessions::shared_session(const Key& key) {
  // "so:" cannot begin a session's key ("s:" and a length).
  return {shared_key(key), "so:" + std::to_string(key.first.size()) + ":" + key.first};
}

std::string ChatSessions::encode(const Key& key, const Conversation& conversation) {
  std::string out = "{\"user\": " + qos::json_string(key.first) + ", \"session_id\": " + std::to_string(key.second) +
                    ", \"tokens\": " + std::to_string(conversation.tokens) + ", \"messages\": [";
  for (std::size_t i = 0; i < conversation.messages.size(); ++i) {
    const engine::ChatMessage& m = conversation.messages[i];
    out += (i ? ", " : "") + std::string("{\"role\": ") + qos::json_string(m.role) +
           ", \"content\": " + qos::json_string(m.content) + "}";
  }
  return out + "]}";
}

std::optional<ChatSessions::Conversation> ChatSessions::decode(const Key& key, std::string_view value) {
  // Anything that is not this user's conversation of this session (damaged, or not ours) is a new
  // session.
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(value.data(), value.size()).get(doc) != simdjson::SUCCESS) return std::nullopt;
  std::string_view user;
  std::int64_t session = 0;
  std::uint64_t tokens = 0;
  simdjson::dom::array messages;
  if (doc["user"].get(user) || user != key.first || doc["session_id"].get(session) || session != key.second ||
      doc["tokens"].get(tokens) || doc["messages"].get(messages)) {
    return std::nullopt;
  }
  Conversation conversation;
  conversation.tokens = static_cast<std::size_t>(tokens);
  for (simdjson::dom::element message : messages) {
    std::string_view role, content;
    if (message["role"].get(role) || message["content"].get(content)) return std::nullopt;
    conversation.messages.push_back({std::string(role), std::string(content)});
  }
  return conversation;
}

std::optional<ChatSessions::Conversation> ChatSessions::find(const Key& key, Clock::time_point now) {
  if (shared_) {
    std::string value;
    switch (shared_->get(shared_session(key), limits_.idle_ttl, value)) {
      case SessionBackend::Lookup::kFound:
        if (auto conversation = decode(key, value)) {
          store_local(key, *conversation, now);  // the fallback if the backend goes away
          return conversation;
        }
        [[fallthrough]];
      case SessionBackend::Lookup::kAbsent:
        erase_local(key);  // ended, or expired, fleet-wide
        return std::nullopt;
      case SessionBackend::Lookup::kUnavailable:
        break;  // what this replica saw last
    }
  }
  std::lock_guard lock(mutex_);
  expire_idle(now);
  const auto it = sessions_.find(key);
  if (it == sessions_.end()) return std::nullopt;
  touch(it->second, now);
  return it->second.conversation;
}

void ChatSessions::store(const Key& key, Conversation conversation, Clock::time_point now,
                         std::function<void()> done) {
  if (shared_ && limits_.max_sessions > 0 && limits_.max_sessions_per_user > 0) {
    std::string value = encode(key, conversation);
    store_local(key, std::move(conversation), now);
    shared_->put(shared_session(key), std::move(value), limits_.idle_ttl, limits_.max_sessions_per_user,
                 std::move(done));
    return;
  }
  store_local(key, std::move(conversation), now);
  if (done) done();
}

void ChatSessions::erase(const Key& key, std::function<void()> done) {
  erase_local(key);
  if (shared_) {
    shared_->erase(shared_session(key), std::move(done));
  } else if (done) {
    done();
  }
}

void ChatSessions::store_local(const Key& key, Conversation conversation, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  expire_idle(now);
  auto it = sessions_.find(key);
  if (it == sessions_.end()) {
    if (limits_.max_sessions == 0 || limits_.max_sessions_per_user == 0) return;
    evict_for(key.first);
    lru_.push_front(key);
    it = sessions_.emplace(key, Entry{{}, now, lru_.begin()}).first;
    count_user(key.first, +1);
  }
  it->second.conversation = std::move(conversation);
  touch(it->second, now);
}

void ChatSessions::evict_for(const std::string& user) {
  // The user's own cap first: its least recently used session goes (lru_'s back is the oldest).
  if (auto mine = per_user_.find(user); mine != per_user_.end() && mine->second >= limits_.max_sessions_per_user) {
    const auto oldest = std::find_if(lru_.rbegin(), lru_.rend(), [&](const Key& k) { return k.first == user; });
    remove(sessions_.find(*oldest));
    ++expired_;
  }
  // Then the server's: the least recently used session among the users holding the most.
  while (!sessions_.empty() && sessions_.size() >= limits_.max_sessions) {
    const std::size_t most = users_by_count_.rbegin()->first;
    const auto victim = std::find_if(lru_.rbegin(), lru_.rend(), [&](const Key& k) { return per_user_[k.first] == most; });
    remove(sessions_.find(*victim));
    ++expired_;
  }
}

void ChatSessions::erase_local(const Key& key) {
  std::lock_guard lock(mutex_);
  const auto it = sessions_.find(key);
  if (it != sessions_.end()) remove(it);
}

void ChatSessions::remove(std::map<Key, Entry>::iterator it) {
  const std::string user = it->first.first;
  lru_.erase(it->second.lru);
  sessions_.erase(it);
  count_user(user, -1);
}

void ChatSessions::count_user(const std::string& user, int delta) {
  std::size_t& held = per_user_[user];
  if (held > 0 && --users_by_count_[held] == 0) users_by_count_.erase(held);
  held = delta > 0 ? held + 1 : held - 1;
  if (held == 0) {
    per_user_.erase(user);
  } else {
    ++users_by_count_[held];
  }
}

std::size_t ChatSessions::size() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

std::size_t ChatSessions::size_for(const std::string& user) const {
  std::lock_guard lock(mutex_);
  const auto it = per_user_.find(user);
  return it == per_user_.end() ? 0 : it->second;
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
    remove(it);
    ++expired_;
  }
}

}  // namespace tiergate::gateway
