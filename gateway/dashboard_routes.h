// The live QoS dashboard's routes (never open): GET /dashboard serves the self-contained page to a
// browser signed in with an admin key (a session cookie from POST /dashboard/login, or the key
// itself as a Bearer header, which also opens a session) and the sign-in form to anyone else (401);
// POST /dashboard/logout ends the session. The page polls GET /admin/qos, which Api lets a signed-in
// cookie read. A session lasts only while the key that opened it is in force and admin: revoking it
// in the API-keys file (reloaded while serving) ends its sessions. Handlers are functions of the
// request; thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "gateway/api.h"
#include "gateway/api_keys.h"
#include "gateway/dashboard_sessions.h"

namespace tiergate::gateway {

class DashboardRoutes {
 public:
  // The keys in force now (they change when the API-keys file is reloaded).
  using KeySource = std::function<std::shared_ptr<const ApiKeyStore>()>;
  explicit DashboardRoutes(KeySource keys) : keys_(std::move(keys)) {}
  explicit DashboardRoutes(std::shared_ptr<const ApiKeyStore> fixed)
      : keys_([fixed = std::move(fixed)] { return fixed; }) {}

  // `route` is the target without its query: /dashboard, /dashboard/login or /dashboard/logout.
  HttpResponse handle(const HttpRequest& request, const std::string& route);
  // Whether the request carries an open dashboard session cookie.
  bool signed_in(const HttpRequest& request) const;

 private:
  HttpResponse page();
  HttpResponse sign_in_form(int status, const std::string& problem) const;
  HttpResponse open_session(const ApiKey& key, const std::string& location);
  // The admin key in the request: a Bearer header, or a `key` field of a form body.
  std::optional<ApiKey> presented_key(const HttpRequest& request, bool from_form) const;

  KeySource keys_;
  DashboardSessions sessions_;
};

// Decodes one field of an application/x-www-form-urlencoded body ("" when absent or malformed).
std::string form_field(std::string_view body, std::string_view name);

}  // namespace tiergate::gateway
