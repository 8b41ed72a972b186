#include "gateway/dashboard_sessions.h"

#include <algorithm>

#include "gateway/api_keys.h"

namespace tiergate::gateway {

std::string DashboardSessions::open(Clock::time_point now, std::string key_sha256) {
  const std::string token = random_hex(32);
  std::lock_guard lock(mutex_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    it = it->second.expiry <= now ? sessions_.erase(it) : std::next(it);
  }
  if (sessions_.size() >= max_sessions_) {  // the session closest to its end goes first
    sessions_.erase(std::min_element(sessions_.begin(), sessions_.end(),
                                     [](const auto& a, const auto& b) { return a.second.expiry < b.second.expiry; }));
  }
  sessions_[sha256_hex(token)] = {now + ttl_, std::move(key_sha256)};
  return token;
}

std::optional<std::string> DashboardSessions::key_of(std::string_view cookie_header, Clock::time_point now) const {
  const std::string token = token_in(cookie_header);
  if (token.size() != 64) return std::nullopt;
  std::lock_guard lock(mutex_);
  // Looked up by hash: the map's comparisons reveal nothing useful about the token itself.
  auto it = sessions_.find(sha256_hex(token));
  if (it == sessions_.end() || now >= it->second.expiry) return std::nullopt;
  return it->second.key_sha256;
}

void DashboardSessions::close(std::string_view cookie_header) {
  const std::string token = token_in(cookie_header);
  if (token.empty()) return;
  std::lock_guard lock(mutex_);
  sessions_.erase(sha256_hex(token));
}

std::size_t DashboardSessions::size() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

std::string DashboardSessions::token_in(std::string_view header) {
  while (!header.empty()) {
    const std::size_t end = std::min(header.find(';'), header.size());
    std::string_view pair = header.substr(0, end);
    header.remove_prefix(std::min(end + 1, header.size()));
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    const std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos || pair.substr(0, eq) != kCookieName) continue;
    std::string_view value = pair.substr(eq + 1);
    while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
    return std::string(value);
  }
  return "";
}

}  // namespace tiergate::gateway
