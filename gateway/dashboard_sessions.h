// Dashboard sign-ins: an admin key presented once to POST /dashboard/login buys a random session
// token, sent back as an HttpOnly, Secure, SameSite=Strict cookie, so that a browser can open
// GET /dashboard and poll GET /admin/qos (read-only) without holding the key. Only the token's
// SHA-256 is kept; tokens expire after `ttl` and the oldest is dropped past `max_sessions`.
// Thread-safe (one mutex). Failure (no randomness from OpenSSL) throws at sign-in, answered 500.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace tiergate::gateway {

class DashboardSessions {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::string_view kCookieName = "tiergate_dashboard";

  explicit DashboardSessions(std::chrono::seconds ttl = std::chrono::hours(8), std::size_t max_sessions = 256)
      : ttl_(ttl), max_sessions_(max_sessions) {}

  // A fresh token (64 hex digits), valid for ttl from now, opened with the key whose SHA-256 is
  // `key_sha256` (so that its sessions can end when it is revoked).
  std::string open(Clock::time_point now, std::string key_sha256 = "");
  // The key hash of the open, unexpired session a `Cookie:` header carries; nullopt without one.
  std::optional<std::string> key_of(std::string_view cookie_header, Clock::time_point now) const;
  bool signed_in(std::string_view cookie_header, Clock::time_point now) const {
    return key_of(cookie_header, now).has_value();
  }
  // Ends the session the header carries, if any.
  void close(std::string_view cookie_header);
  std::chrono::seconds ttl() const { return ttl_; }
  std::size_t size() const;

  // The token in a `Cookie:` header ("" when absent): `a=1; tiergate_dashboard=<token>; b=2`.
  static std::string token_in(std::string_view cookie_header);

 private:
  const std::chrono::seconds ttl_;
  const std::size_t max_sessions_;
  mutable std::mutex mutex_;
  struct Session {
    Clock::time_point expiry;
    std::string key_sha256;
  };
  std::map<std::string, Session> sessions_;  // token hash → session
};

}  // namespace tiergate::gateway
