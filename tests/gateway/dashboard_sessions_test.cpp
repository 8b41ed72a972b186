// gateway/dashboard_sessions.*: tokens are random, expire, are bounded in number, and are found in
// a Cookie header among other cookies.
#include "gateway/dashboard_sessions.h"

#include <gtest/gtest.h>

namespace tiergate::gateway {
namespace {

std::string cookie(const std::string& token) { return "theme=dark; tiergate_dashboard=" + token + "; lang=en"; }

TEST(DashboardSessions, AnOpenedTokenSignsInUntilItExpires) {
  DashboardSessions sessions(std::chrono::seconds(60), 8);
  const auto t0 = DashboardSessions::Clock::now();
  const std::string token = sessions.open(t0);
  EXPECT_EQ(token.size(), 64u);
  EXPECT_TRUE(sessions.signed_in(cookie(token), t0 + std::chrono::seconds(59)));
  EXPECT_FALSE(sessions.signed_in(cookie(token), t0 + std::chrono::seconds(60)));
  EXPECT_NE(sessions.open(t0), token);  // fresh randomness every time
}

TEST(DashboardSessions, ForgedMissingAndClosedTokensDoNotSignIn) {
  DashboardSessions sessions;
  const auto t0 = DashboardSessions::Clock::now();
  const std::string token = sessions.open(t0);
  std::string forged = token;
  forged[0] = forged[0] == 'a' ? 'b' : 'a';
  EXPECT_FALSE(sessions.signed_in(cookie(forged), t0));
  EXPECT_FALSE(sessions.signed_in("", t0));
  EXPECT_FALSE(sessions.signed_in("tiergate_dashboard=", t0));
  EXPECT_FALSE(sessions.signed_in("other=" + token, t0));  // the right value under another name
  sessions.close(cookie(token));
  EXPECT_FALSE(sessions.signed_in(cookie(token), t0));
}

TEST(DashboardSessions, TheNumberOfSessionsIsBounded) {
  DashboardSessions sessions(std::chrono::seconds(100), 3);
  const auto t0 = DashboardSessions::Clock::now();
  std::vector<std::string> tokens;
  for (int i = 0; i < 5; ++i) tokens.push_back(sessions.open(t0 + std::chrono::seconds(i)));
  EXPECT_EQ(sessions.size(), 3u);
  EXPECT_FALSE(sessions.signed_in(cookie(tokens[0]), t0 + std::chrono::seconds(5)));  // oldest went first
  EXPECT_FALSE(sessions.signed_in(cookie(tokens[1]), t0 + std::chrono::seconds(5)));
  EXPECT_TRUE(sessions.signed_in(cookie(tokens[4]), t0 + std::chrono::seconds(5)));
}

TEST(DashboardSessions, TokenInReadsOneCookieAmongMany) {
  EXPECT_EQ(DashboardSessions::token_in("a=1;tiergate_dashboard=abc ; b=2"), "abc");
  EXPECT_EQ(DashboardSessions::token_in("tiergate_dashboard_x=abc"), "");
  EXPECT_EQ(DashboardSessions::token_in("novalue; tiergate_dashboard=z"), "z");
  EXPECT_EQ(DashboardSessions::token_in(""), "");
}

}  // namespace
}  // namespace tiergate::gateway
