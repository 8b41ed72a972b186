// gateway/metrics.*: label escaping as the Prometheus text format requires, and the bound on
// per-user series.
#include "gateway/metrics.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <set>

namespace tiergate::gateway {
namespace {

// Reads one escaped label value back, as Prometheus's parser does.
std::string unescape(std::string_view v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 1 < v.size()) {
      ++i;
      out += v[i] == 'n' ? '\n' : v[i];
    } else {
      out += v[i];
    }
  }
  return out;
}

TEST(Metrics, EscapesBackslashQuoteAndLineFeed) {
  EXPECT_EQ(escape_label_value(R"(a"b\c)" "\nd"), R"(a\"b\\c\nd)");
  EXPECT_EQ(escape_label_value("plain ünï"), "plain ünï");
  MetricsText m;
  m.family("t_total", "counter", "Help.");
  m.sample("t_total", {{"route", "/x\"y"}, {"status", "404"}}, 3);
  m.sample("t_total", {}, 1.0 / 0.0);
  EXPECT_EQ(m.text(), "# HELP t_total Help.\n# TYPE t_total counter\nt_total{route=\"/x\\\"y\",status=\"404\"} 3\n"
                      "t_total +Inf\n");
}

RC_GTEST_PROP(MetricsProperty, AnEscapedValueStaysOneLineAndReadsBack, (const std::string& value)) {
  const std::string escaped = escape_label_value(value);
  RC_ASSERT(escaped.find('\n') == std::string::npos);
  // No unescaped quote: every '"' is preceded by an odd run of backslashes.
  for (std::size_t i = 0; i < escaped.size(); ++i) {
    if (escaped[i] != '"') continue;
    std::size_t slashes = 0;
    for (std::size_t j = i; j > 0 && escaped[j - 1] == '\\'; --j) ++slashes;
    RC_ASSERT(slashes % 2 == 1);
  }
  RC_ASSERT(unescape(escaped) == value);
}

qos::UserUsage user(std::string id, std::string group, double weighted, std::int64_t prompt, std::int64_t output) {
  qos::UserUsage u;
  u.user_id = std::move(id);
  u.group = std::move(group);
  u.weighted_tokens = weighted;
  u.prompt_tokens = prompt;
  u.output_tokens = output;
  return u;
}

TEST(Metrics, TheTopUsersGetSeriesAndTheRestAreSummedByGroup) {
  const std::vector<qos::UserUsage> users = {user("a", "Gold", 5, 1, 2), user("b", "Gold", 50, 10, 20),
                                             user("c", "Bronze", 7, 3, 2), user("d", "Bronze", 1, 1, 0),
                                             user("e", "Gold", 9, 4, 2)};
  const UserSeries s = select_user_series(users, 2);
  ASSERT_EQ(s.shown.size(), 2u);
  EXPECT_EQ(s.shown[0]->user_id, "b");  // report order kept
  EXPECT_EQ(s.shown[1]->user_id, "e");
  ASSERT_EQ(s.rest.size(), 2u);
  EXPECT_EQ(s.rest[0].group, "Gold");
  EXPECT_EQ(s.rest[0].users, 1u);
  EXPECT_EQ(s.rest[0].prompt_tokens, 1);
  EXPECT_EQ(s.rest[1].group, "Bronze");
  EXPECT_EQ(s.rest[1].users, 2u);
  EXPECT_EQ(s.rest[1].output_tokens, 2);
}

RC_GTEST_PROP(MetricsProperty, UserSeriesAreBoundedAndLoseNoTokens, ()) {
  const auto n = *rc::gen::inRange<std::size_t>(0, 60);
  std::vector<qos::UserUsage> users;
  for (std::size_t i = 0; i < n; ++i) {
    users.push_back(user("u" + std::to_string(i), *rc::gen::element<std::string>("A", "B", "C"),
                         *rc::gen::inRange(0, 100), *rc::gen::inRange(0, 1000), *rc::gen::inRange(0, 1000)));
  }
  const auto limit = *rc::gen::inRange<std::size_t>(0, 20);
  const UserSeries s = select_user_series(users, limit);
  RC_ASSERT(s.shown.size() == std::min(limit, n));
  std::int64_t shown_tokens = 0, rest_tokens = 0, all_tokens = 0;
  std::size_t rest_users = 0;
  for (const auto* u : s.shown) shown_tokens += u->prompt_tokens + u->output_tokens;
  for (const auto& r : s.rest) {
    rest_tokens += r.prompt_tokens + r.output_tokens;
    rest_users += r.users;
  }
  for (const auto& u : users) all_tokens += u.prompt_tokens + u.output_tokens;
  RC_ASSERT(shown_tokens + rest_tokens == all_tokens);
  RC_ASSERT(s.shown.size() + rest_users == n);
  // Nobody left out has more service than somebody shown.
  double least_shown = 1e300;
  for (const auto* u : s.shown) least_shown = std::min(least_shown, u->weighted_tokens);
  std::set<const qos::UserUsage*> shown(s.shown.begin(), s.shown.end());
  for (const auto& u : users) {
    if (!shown.count(&u)) RC_ASSERT(u.weighted_tokens <= least_shown);
  }
}

}  // namespace
}  // namespace tiergate::gateway
