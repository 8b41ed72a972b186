// gateway/dashboard_routes.*: the page is never served without an admin key or a session bought
// with one; sign-in sets a hardened cookie that then opens the page; logout ends it.
#include "gateway/dashboard_routes.h"

#include <gtest/gtest.h>

#include <vector>

namespace tiergate::gateway {
namespace {

constexpr const char* kAdminKey = "tg-admin-key";
constexpr const char* kUserKey = "tg-user-key";

DashboardRoutes routes() {
  return DashboardRoutes(ApiKeyStore::from_keys({{"admin", sha256_hex(kAdminKey), true, {}, true},
                                                 {"user", sha256_hex(kUserKey), false, {"u1"}, false}}));
}

std::string header(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

HttpRequest get(std::string auth = "", std::string cookie = "") {
  return {"GET", "/dashboard", std::move(auth), "", std::move(cookie)};
}

bool is_dashboard(const HttpResponse& r) { return r.body.find("/admin/qos") != std::string::npos; }

TEST(DashboardRoutes, WithoutCredentialsOnlyTheSignInFormIsServed) {
  DashboardRoutes d = routes();
  const HttpResponse r = d.handle(get(), "/dashboard");
  EXPECT_EQ(r.status, 401);
  EXPECT_FALSE(is_dashboard(r));
  EXPECT_NE(r.body.find("action=\"/dashboard/login\""), std::string::npos);
  EXPECT_EQ(header(r, "Set-Cookie"), "");
  EXPECT_EQ(d.handle(get("", "tiergate_dashboard=" + std::string(64, 'a')), "/dashboard").status, 401);
}

TEST(DashboardRoutes, SignInWithAnAdminKeySetsAHardenedCookieThatOpensThePage) {
  DashboardRoutes d = routes();
  const HttpResponse login = d.handle({"POST", "/dashboard/login", "", "key=tg-admin-key", ""}, "/dashboard/login");
  ASSERT_EQ(login.status, 303);
  EXPECT_EQ(header(login, "Location"), "/dashboard");
  const std::string set_cookie = header(login, "Set-Cookie");
  for (const char* attribute : {"HttpOnly", "Secure", "SameSite=Strict", "Path=/"}) {
    EXPECT_NE(set_cookie.find(attribute), std::string::npos) << attribute;
  }
  const std::string cookie = set_cookie.substr(0, set_cookie.find(';'));
  EXPECT_TRUE(d.signed_in(get("", cookie)));
  const HttpResponse page = d.handle(get("", cookie), "/dashboard");
  EXPECT_EQ(page.status, 200);
  EXPECT_TRUE(is_dashboard(page));
  // The page's only script and style run by the nonce its policy names; no outside source at all.
  const std::string csp = header(page, "Content-Security-Policy");
  const std::string nonce = csp.substr(csp.find("'nonce-") + 7, 32);
  EXPECT_NE(page.body.find("<script nonce=\"" + nonce + "\">"), std::string::npos);
  EXPECT_EQ(page.body.find("{{nonce}}"), std::string::npos);
  EXPECT_EQ(page.body.find("http://"), std::string::npos);
  EXPECT_EQ(page.body.find("https://"), std::string::npos);
  EXPECT_NE(csp.find("default-src 'none'"), std::string::npos);

  const HttpResponse out = d.handle({"POST", "/dashboard/logout", "", "", cookie}, "/dashboard/logout");
  EXPECT_EQ(out.status, 303);
  EXPECT_FALSE(d.signed_in(get("", cookie)));
}

TEST(DashboardRoutes, NonAdminAndWrongKeysAreRefused) {
  DashboardRoutes d = routes();
  const HttpResponse user = d.handle({"POST", "/dashboard/login", "", "key=tg-user-key", ""}, "/dashboard/login");
  EXPECT_EQ(user.status, 403);
  EXPECT_EQ(header(user, "Set-Cookie"), "");
  const HttpResponse wrong = d.handle({"POST", "/dashboard/login", "", "key=tg-nope", ""}, "/dashboard/login");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(header(wrong, "Set-Cookie"), "");
  EXPECT_EQ(d.handle(get("Bearer tg-user-key"), "/dashboard").status, 403);
}

TEST(DashboardRoutes, AnAdminBearerKeyOpensThePageAndASession) {
  DashboardRoutes d = routes();
  const HttpResponse r = d.handle(get("Bearer tg-admin-key"), "/dashboard");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(is_dashboard(r));
  EXPECT_NE(header(r, "Set-Cookie").find("tiergate_dashboard="), std::string::npos);
}

// Issue 11, hole 10: keys reload while serving, so revoking an admin key (or its admin mark) must
// end the dashboard sessions it opened, not leave them open for their eight hours.
TEST(DashboardRoutes, RevokingTheKeyEndsItsSessions) {
  const auto both = ApiKeyStore::from_keys({{"admin", sha256_hex(kAdminKey), true, {}, true},
                                           {"ops", sha256_hex("tg-ops-key"), true, {}, true}});
  std::shared_ptr<const ApiKeyStore> in_force = both;
  DashboardRoutes d([&] { return in_force; });
  auto sign_in = [&](const std::string& key) {
    const HttpResponse login = d.handle({"POST", "/dashboard/login", "", "key=" + key, ""}, "/dashboard/login");
    EXPECT_EQ(login.status, 303);
    const std::string set_cookie = header(login, "Set-Cookie");
    return set_cookie.substr(0, set_cookie.find(';'));
  };
  const std::string admin_cookie = sign_in(kAdminKey);
  const std::string ops_cookie = sign_in("tg-ops-key");
  EXPECT_TRUE(d.signed_in(get("", admin_cookie)));
  in_force = ApiKeyStore::from_keys({{"ops", sha256_hex("tg-ops-key"), true, {}, true}});  // admin revoked
  EXPECT_FALSE(d.signed_in(get("", admin_cookie)));
  EXPECT_EQ(d.handle(get("", admin_cookie), "/dashboard").status, 401);
  EXPECT_TRUE(d.signed_in(get("", ops_cookie)));  // the other key's session goes on
  in_force = ApiKeyStore::from_keys({{"ops", sha256_hex("tg-ops-key"), true, {}, false}});  // no longer admin
  EXPECT_FALSE(d.signed_in(get("", ops_cookie)));
}

// Issue 23, hole 6: the dashboard's answers asked browsers for HTTPS only after the first visit.
// Every one of them (form, page, sign-in and sign-out redirects) asks now; the transport drops the
// header again on plain HTTP (--insecure-http), where it must not be sent.
TEST(DashboardRoutes, EveryAnswerAsksForStrictTransportSecurity) {
  DashboardRoutes d = routes();
  const std::vector<HttpResponse> answers{
      d.handle(get(), "/dashboard"),
      d.handle(get("Bearer tg-user-key"), "/dashboard"),
      d.handle(get("Bearer tg-admin-key"), "/dashboard"),
      d.handle({"POST", "/dashboard/login", "", "key=tg-admin-key", ""}, "/dashboard/login"),
      d.handle({"POST", "/dashboard/login", "", "key=wrong", ""}, "/dashboard/login"),
      d.handle({"POST", "/dashboard/logout", "", "", ""}, "/dashboard/logout")};
  for (const HttpResponse& r : answers) {
    EXPECT_EQ(header(r, "Strict-Transport-Security"), "max-age=63072000") << r.status;
  }
}

TEST(FormField, DecodesOneFieldOfAUrlEncodedBody) {
  EXPECT_EQ(form_field("a=1&key=tg-ab%2Fc+d&z=2", "key"), "tg-ab/c d");
  EXPECT_EQ(form_field("keys=1&key=", "key"), "");
  EXPECT_EQ(form_field("key=%4", "key"), "");   // cut-off escape
  EXPECT_EQ(form_field("key=%zz", "key"), "");  // not hex
  EXPECT_EQ(form_field("", "key"), "");
}

}  // namespace
}  // namespace tiergate::gateway
