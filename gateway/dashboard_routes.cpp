#include "gateway/dashboard_routes.h"

#include "gateway/dashboard_page.h"

namespace tiergate::gateway {
namespace {

std::string fill(std::string_view page, std::string_view nonce, std::string_view problem = "") {
  std::string out(page);
  for (const auto& [mark, value] : {std::pair<std::string_view, std::string_view>{"{{nonce}}", nonce},
                                    std::pair<std::string_view, std::string_view>{"{{problem}}", problem}}) {
    for (std::size_t at = out.find(mark); at != std::string::npos; at = out.find(mark, at + value.size())) {
      out.replace(at, mark.size(), value);
    }
  }
  return out;
}

// Headers every dashboard answer carries: nothing cached, nothing framed, only this page's own
// script and style (by nonce), network only to its own origin.
void harden(HttpResponse& r, const std::string& nonce) {
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  r.headers.emplace_back("Content-Security-Policy",
                         "default-src 'none'; script-src 'nonce-" + nonce + "'; style-src 'nonce-" + nonce +
                             "'; connect-src 'self'; img-src 'self' data:; form-action 'self'; "
                             "frame-ancestors 'none'; base-uri 'none'");
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string form_field(std::string_view body, std::string_view name) {
  while (!body.empty()) {
    const std::size_t end = std::min(body.find('&'), body.size());
    const std::string_view pair = body.substr(0, end);
    body.remove_prefix(std::min(end + 1, body.size()));
    const std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos || pair.substr(0, eq) != name) continue;
    std::string value;
    const std::string_view raw = pair.substr(eq + 1);
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '+') {
        value += ' ';
      } else if (raw[i] == '%') {
        if (i + 2 >= raw.size()) return "";  // a cut-off escape
        const int hi = hex_value(raw[i + 1]), lo = hex_value(raw[i + 2]);
        if (hi < 0 || lo < 0) return "";
        value += static_cast<char>(hi * 16 + lo);
        i += 2;
      } else {
        value += raw[i];
      }
    }
    return value;
  }
  return "";
}

bool DashboardRoutes::signed_in(const HttpRequest& request) const {
  if (request.cookie.empty()) return false;
  const std::optional<std::string> key_hash = sessions_.key_of(request.cookie, DashboardSessions::Clock::now());
  if (!key_hash) return false;
  const std::optional<ApiKey> key = keys_()->find_by_hash(*key_hash);
  return key && key->admin;  // revoked, or no longer admin: the session is over
}

std::optional<ApiKey> DashboardRoutes::presented_key(const HttpRequest& request, bool from_form) const {
  const std::string& auth = request.authorization;
  if (auth.rfind("Bearer ", 0) == 0 && auth.size() > 7) return keys_()->authenticate(std::string_view(auth).substr(7));
  if (!from_form) return std::nullopt;
  const std::string key = form_field(request.body, "key");
  if (key.empty()) return std::nullopt;
  return keys_()->authenticate(key);
}

HttpResponse DashboardRoutes::sign_in_form(int status, const std::string& problem) const {
  const std::string nonce = random_hex(16);
  HttpResponse r{status, "text/html; charset=utf-8", fill(kSignInPage, nonce, problem), {}};
  harden(r, nonce);
  return r;
}

HttpResponse DashboardRoutes::page() {
  const std::string nonce = random_hex(16);
  HttpResponse r{200, "text/html; charset=utf-8", fill(kDashboardPage, nonce), {}};
  harden(r, nonce);
  return r;
}

HttpResponse DashboardRoutes::open_session(const ApiKey& key, const std::string& location) {
  const std::string token = sessions_.open(DashboardSessions::Clock::now(), key.sha256);
  HttpResponse r = location.empty() ? page() : HttpResponse{303, "text/plain; charset=utf-8", "signed in\n", {}};
  if (!location.empty()) r.headers.emplace_back("Location", location);
  r.headers.emplace_back("Set-Cookie", std::string(DashboardSessions::kCookieName) + "=" + token +
                                           "; Path=/; Max-Age=" + std::to_string(sessions_.ttl().count()) +
                                           "; HttpOnly; Secure; SameSite=Strict");
  return r;
}

HttpResponse DashboardRoutes::handle(const HttpRequest& request, const std::string& route) {
  // A browser that once reached the dashboard over HTTPS never tries plain HTTP for this host
  // again, where an admin key or a session cookie could be read on the way (two years: Mozilla's
  // figure). The transport drops the header on plain HTTP (--insecure-http), where it must not go.
  auto pinned = [](HttpResponse r) {
    r.headers.emplace_back("Strict-Transport-Security", "max-age=63072000");
    return r;
  };
  if (route == "/dashboard/logout") {
    sessions_.close(request.cookie);
    HttpResponse r{303, "text/plain; charset=utf-8", "signed out\n", {{"Location", "/dashboard"}}};
    r.headers.emplace_back("Set-Cookie", std::string(DashboardSessions::kCookieName) +
                                             "=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
    return pinned(std::move(r));
  }
  const bool login = route == "/dashboard/login";
  if (!login && signed_in(request)) return pinned(page());
  const std::optional<ApiKey> key = presented_key(request, login);
  if (!key) {
    const bool tried = login || !request.authorization.empty();
    return pinned(sign_in_form(401, tried ? "That key is not valid." : ""));
  }
  if (!key->admin) return pinned(sign_in_form(403, "That key is valid but not an admin key."));
  return pinned(open_session(*key, login ? "/dashboard" : ""));
}

}  // namespace tiergate::gateway
