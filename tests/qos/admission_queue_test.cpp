// qos/admission_queue.*: the admission semantics of DESIGN.md §3, one behaviour per test.
#include "qos/admission_queue.h"

#include <gtest/gtest.h>

#include "qos/config_parser.h"

namespace tiergate::qos {
namespace {

using std::chrono::seconds;

const Clock::time_point kT0{};

std::shared_ptr<const Config> config_from(std::string_view text) {
  ConfigParseResult result = parse_config(text, "test.json");
  EXPECT_TRUE(result.ok()) << result.describe();
  return result.config;
}

// Platinum: p (100). Gold: g1, g2 (50/50). Silver: s (5), default (95). Bronze: b (100), z (0).
std::shared_ptr<const Config> four_groups() {
  return config_from(R"({"enable_user_qos": true,
    "user_groups": ["Platinum", "Gold", "Silver", "Bronze"],
    "user_group_map": {
      "Platinum": [{"id": "p", "quota_pct": 100}],
      "Gold": [{"id": "g1", "quota_pct": 50}, {"id": "g2", "quota_pct": 50}],
      "Silver": [{"id": "s", "quota_pct": 5}, {"id": "default", "quota_pct": 95}],
      "Bronze": [{"id": "b", "quota_pct": 100}, {"id": "z", "quota_pct": 0}]},
    "group_limits": {"Bronze": {"max_queued": 3, "max_queue_wait_s": 10, "retry_after_s": 7}}})");
}

class AdmissionQueueTest : public ::testing::Test {
 protected:
  AdmissionQueue queue{four_groups()};
  RequestId next_id = 1;

  RequestId add(const std::string& user, std::int64_t prompt = 10, Clock::time_point at = kT0) {
    const RequestId id = next_id++;
    EXPECT_EQ(queue.enqueue({id, user, prompt, 10}, at).status, EnqueueStatus::kQueued) << user;
    return id;
  }
  std::string next_user() {
    auto admission = queue.next(kT0);
    return admission ? admission->user_id : "<none>";
  }
  // Admits the next request, charges it `tokens` output tokens and finishes it.
  std::string serve(std::int64_t tokens) {
    auto admission = queue.next(kT0);
    if (!admission) return "<none>";
    queue.charge(admission->user_id, 0, tokens);
    queue.finish(admission->id);
    return admission->user_id;
  }
};

TEST_F(AdmissionQueueTest, StrictPriorityAcrossGroups) {
  add("b");
  add("s");
  add("g1");
  add("p");
  EXPECT_EQ(next_user(), "p");
  EXPECT_EQ(next_user(), "g1");
  EXPECT_EQ(next_user(), "s");
  EXPECT_EQ(next_user(), "b");
  EXPECT_EQ(next_user(), "<none>");
}

TEST_F(AdmissionQueueTest, FifoPerUser) {
  const RequestId first = add("g1");
  const RequestId second = add("g1");
  EXPECT_EQ(queue.next(kT0)->id, first);
  EXPECT_EQ(queue.next(kT0)->id, second);
}

TEST_F(AdmissionQueueTest, ServiceFollowsTokenCostAndQuota) {
  for (int i = 0; i < 40; ++i) {
    add("g1");
    add("g2");
  }
  int g1 = 0, g2 = 0;
  for (int i = 0; i < 33; ++i) {
    // g1's requests generate 100 tokens, g2's 10: equal quotas mean equal weighted tokens, so
    // g2 is admitted about ten times as often.
    auto admission = queue.next(kT0);
    ASSERT_TRUE(admission);
    const bool is_g1 = admission->user_id == "g1";
    queue.charge(admission->user_id, 0, is_g1 ? 100 : 10);
    queue.finish(admission->id);
    (is_g1 ? g1 : g2)++;
  }
  EXPECT_EQ(g1, 3);
  EXPECT_EQ(g2, 30);
}

TEST_F(AdmissionQueueTest, ScavengerOnlyWhenNoPositiveQuotaUserWaits) {
  add("z");
  add("b");
  add("b");
  EXPECT_EQ(next_user(), "b");
  EXPECT_EQ(next_user(), "b");
  EXPECT_EQ(next_user(), "z");
}

TEST_F(AdmissionQueueTest, IdleUserBanksNoCredit) {
  // g1 is served alone for a long time; when g2 arrives it is lifted to g1's counter instead of
  // starting at 0 and monopolising the group until it has caught up.
  for (int i = 0; i < 50; ++i) {
    add("g1");
    EXPECT_EQ(serve(100), "g1");
  }
  add("g1");
  add("g1");
  for (int i = 0; i < 5; ++i) add("g2");
  // Without the lift g2 (counter 0) would take the next 50 admissions.
  const std::string a = serve(100), b = serve(100), c = serve(100);
  const int g1 = (a == "g1") + (b == "g1") + (c == "g1");
  EXPECT_GE(g1, 1) << a << b << c;
  EXPECT_LE(g1, 2) << a << b << c;
}

TEST_F(AdmissionQueueTest, UnknownUsersEachGetTheirOwnAccountInTheDefaultShare) {
  // A heavy unknown user cannot starve a light one: they split the default share evenly.
  for (int i = 0; i < 20; ++i) add("heavy");
  add("light");
  EXPECT_EQ(serve(100), "heavy");  // oldest head first at equal counters
  EXPECT_EQ(serve(100), "light");
  EXPECT_EQ(queue.usage().users.size(), 2u);
}

TEST_F(AdmissionQueueTest, UnconfiguredUserRefusedWhenNoGroupTakesUnknowns) {
  AdmissionQueue strict(config_from(R"({"enable_user_qos": true, "user_groups": ["A"],
      "user_group_map": {"A": [{"id": "a", "quota_pct": 1}]}})"));
  EXPECT_EQ(strict.enqueue({1, "stranger", 1, 1}, kT0).status, EnqueueStatus::kUserNotConfigured);
  EXPECT_EQ(strict.waiting(), 0u);
}

TEST_F(AdmissionQueueTest, FullGroupQueueRefusesWithRetryAfter) {
  add("b");
  add("b");
  add("z");
  EnqueueResult result = queue.enqueue({99, "b", 1, 1}, kT0);
  EXPECT_EQ(result.status, EnqueueStatus::kQueueFull);
  EXPECT_EQ(result.group, "Bronze");
  EXPECT_DOUBLE_EQ(result.retry_after_s, 7);
  // Other groups are unaffected.
  add("g1");
}

TEST_F(AdmissionQueueTest, DuplicateIdRefused) {
  add("g1");
  EXPECT_EQ(queue.enqueue({1, "g2", 1, 1}, kT0).status, EnqueueStatus::kDuplicateId);
}

TEST_F(AdmissionQueueTest, RequestsPastTheirWaitBoundExpire) {
  const RequestId old = add("b", 10, kT0);
  add("b", 10, kT0 + seconds(5));
  std::vector<ExpiredRequest> expired = queue.expire(kT0 + seconds(11));
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].id, old);
  EXPECT_EQ(expired[0].group, "Bronze");
  EXPECT_EQ(queue.waiting(), 1u);
}

TEST_F(AdmissionQueueTest, CancelWaitingAndRunning) {
  const RequestId waiting = add("g1");
  const RequestId running = add("p");
  ASSERT_EQ(queue.next(kT0)->id, running);
  EXPECT_TRUE(queue.cancel(waiting));
  EXPECT_TRUE(queue.cancel(running));
  EXPECT_FALSE(queue.cancel(running));
  EXPECT_EQ(queue.waiting(), 0u);
  EXPECT_EQ(queue.running(), 0u);
}

TEST_F(AdmissionQueueTest, PreemptedRequestReturnsToTheHeadOfItsUsersQueue) {
  const RequestId first = add("b");
  const RequestId second = add("b");
  auto admitted = queue.next(kT0);
  ASSERT_EQ(admitted->id, first);
  EXPECT_TRUE(admitted->first_start);
  add("p");
  // It must recompute its prompt and the 7 tokens it generated.
  EXPECT_TRUE(queue.preempt(first, kT0, 17));
  EXPECT_FALSE(queue.preempt(first, kT0));  // no longer running
  EXPECT_EQ(next_user(), "p");
  auto resumed = queue.next(kT0);
  EXPECT_EQ(resumed->id, first);
  EXPECT_EQ(resumed->prompt_tokens, 17);
  EXPECT_FALSE(resumed->first_start);  // its wait was recorded at its first start
  EXPECT_EQ(queue.next(kT0)->id, second);
  // A preempted request is not counted twice.
  EXPECT_EQ(queue.usage().users.front().requests, 2u);
}

TEST_F(AdmissionQueueTest, TheWaitBoundHoldsUntilTheFirstTokenAndNeverAfter) {
  // Bronze's bound is 10 s. A start that failed (nothing streamed) keeps waiting against it, its
  // wait counted from its arrival less the time it ran; a request that streamed is exempt.
  const RequestId unlucky = add("b", 10, kT0);
  const RequestId streamed = add("b", 10, kT0);
  ASSERT_EQ(queue.next(kT0 + seconds(2))->id, unlucky);
  ASSERT_EQ(queue.next(kT0 + seconds(2))->id, streamed);
  EXPECT_TRUE(queue.preempt(unlucky, kT0 + seconds(5), -1, 0, /*streamed=*/false));  // ran 3 s
  EXPECT_TRUE(queue.preempt(streamed, kT0 + seconds(5), -1, 0, /*streamed=*/true));
  EXPECT_TRUE(queue.expire(kT0 + seconds(12)).empty());  // waited 2 + 7 = 9 s
  const std::vector<ExpiredRequest> expired = queue.expire(kT0 + seconds(14));  // 2 + 9 = 11 s
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].id, unlucky);
  EXPECT_TRUE(queue.expire(kT0 + seconds(1000)).empty());
  EXPECT_EQ(queue.waiting(), 1u);
}

TEST_F(AdmissionQueueTest, PromptTokenLimitBlocksTheHeadRatherThanBypassingIt) {
  add("p", 500);
  add("b", 5);
  EXPECT_FALSE(queue.next(kT0, 100));  // Bronze must not jump the Platinum request
  EXPECT_EQ(queue.next(kT0, 500)->user_id, "p");
}

TEST_F(AdmissionQueueTest, UnknownUsersAccountsGoOnceIdleAndMemoryStaysBounded) {
  // Silver takes unknown users (default 95%). A million distinct users, each served once: their
  // accounts go when idle (those in debt once the debt list is full), their service stays counted.
  constexpr int kUsers = 1'000'000;
  std::size_t most = 0;
  for (int i = 0; i < kUsers; ++i) {
    add("visitor-" + std::to_string(i));
    if (i % 2 == 1) {  // two at a time: one is served while the other waits
      for (int k = 0; k < 2; ++k) {
        auto a = queue.next(kT0);
        ASSERT_TRUE(a);
        queue.charge(a->id, 5, 3);
        queue.finish(a->id);
      }
    }
    most = std::max(most, queue.accounts());
  }
  EXPECT_LE(most, 10'002u);
  const UsageReport usage = queue.usage();
  EXPECT_DOUBLE_EQ(usage.groups[2].weighted_tokens, kUsers * 11.0);
  EXPECT_EQ(usage.groups[2].requests, static_cast<std::uint64_t>(kUsers));
  EXPECT_GE(usage.groups[2].retired_users, static_cast<std::uint64_t>(kUsers) - 10'002);
}

TEST_F(AdmissionQueueTest, AnAccountInDebtIsKeptUntilALiftWouldEraseIt) {
  // x was served far more than y; dropping x's account while y still waits below it would forgive
  // that debt. It goes only once the group's floor has caught up.
  add("x");
  auto a = queue.next(kT0);
  queue.charge(a->id, 0, 1000);
  add("y");
  queue.finish(a->id);
  EXPECT_EQ(queue.accounts(), 2u);  // x is idle but in debt
  const RequestId x_again = add("x");
  for (const UserUsage& u : queue.usage().users) {
    if (u.user_id == "x") {
      EXPECT_GT(u.virtual_counter, 1000);  // its counter was kept, not lifted from 0
    }
  }
  EXPECT_EQ(next_user(), "y");
  EXPECT_EQ(queue.next(kT0)->id, x_again);
}

TEST_F(AdmissionQueueTest, ReloadKeepsQueuedRequestsAndCounters) {
  for (int i = 0; i < 5; ++i) {
    add("g1");
    serve(100);
  }
  add("g1");
  add("b");
  // The new config moves b to the top and drops g2; g1 stays.
  queue.reload(config_from(R"({"enable_user_qos": true, "user_groups": ["Top", "Gold"],
      "user_group_map": {"Top": [{"id": "b", "quota_pct": 1}],
                         "Gold": [{"id": "g1", "quota_pct": 1}]}})"));
  EXPECT_EQ(queue.waiting(), 2u);
  const UsageReport usage = queue.usage();
  bool found = false;
  for (const UserUsage& u : usage.users) {
    if (u.user_id == "g1") {
      found = true;
      EXPECT_DOUBLE_EQ(u.weighted_tokens, 1000);
      EXPECT_EQ(u.group, "Gold");
    }
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(next_user(), "b");
  EXPECT_EQ(next_user(), "g1");
}

TEST_F(AdmissionQueueTest, ReloadKeepsRequestsOfUsersTheNewConfigDropsServedLast) {
  add("g2");
  add("g1");
  queue.reload(config_from(R"({"enable_user_qos": true, "user_groups": ["Gold"],
      "user_group_map": {"Gold": [{"id": "g1", "quota_pct": 1}]}})"));
  EXPECT_EQ(next_user(), "g1");
  EXPECT_EQ(next_user(), "g2");  // kept, served as a scavenger
  EXPECT_EQ(queue.enqueue({50, "g2", 1, 1}, kT0).status, EnqueueStatus::kUserNotConfigured);
}

TEST(AdmissionQueueFcfs, DisabledQosIsOneFifo) {
  AdmissionQueue queue(config_from(R"({"enable_user_qos": false})"));
  for (RequestId id = 1; id <= 6; ++id) {
    ASSERT_EQ(queue.enqueue({id, id % 2 ? "a" : "b", 1, 1}, kT0).status, EnqueueStatus::kQueued);
  }
  queue.charge("a", 1000, 1000);  // counters play no part in FCFS
  for (RequestId id = 1; id <= 6; ++id) EXPECT_EQ(queue.next(kT0)->id, id);
}

TEST_F(AdmissionQueueTest, UsageReportsSharesAndCounts) {
  add("g1");
  add("g2");
  queue.charge(next_user(), 10, 0);
  queue.charge(next_user(), 20, 5);
  const UsageReport report = queue.usage();
  ASSERT_EQ(report.groups.size(), 4u);
  EXPECT_EQ(report.groups[1].name, "Gold");
  EXPECT_DOUBLE_EQ(report.groups[1].weighted_tokens, 40);
  EXPECT_EQ(report.groups[1].running, 2u);
  ASSERT_EQ(report.users.size(), 2u);
  EXPECT_DOUBLE_EQ(report.users[0].quota_share, 0.5);
  // g1 was charged 10 prompt tokens, g2 20 prompt + 5 output (w_out 2): 10 and 30 weighted.
  EXPECT_EQ(report.users[0].user_id, "g1");
  EXPECT_DOUBLE_EQ(report.users[0].served_share, 0.25);
  EXPECT_DOUBLE_EQ(report.users[1].served_share, 0.75);
  EXPECT_NE(to_json(report).find("\"user_id\": \"g1\""), std::string::npos);
  EXPECT_NE(to_text(report).find("g2"), std::string::npos);
}

}  // namespace
}  // namespace tiergate::qos
