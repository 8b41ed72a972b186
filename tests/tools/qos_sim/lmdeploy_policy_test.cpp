// tools/qos_sim/lmdeploy_policy.*: the baseline behaves as LMDeploy's qos_engine did.
#include "tools/qos_sim/lmdeploy_policy.h"

#include <gtest/gtest.h>

#include "qos/config_parser.h"

namespace tiergate::qos_sim {
namespace {

std::shared_ptr<const qos::Config> lmdeploy_template() {
  auto parsed = qos::load_config_file(TIERGATE_SOURCE_DIR "/config/qos_config.json.template");
  EXPECT_TRUE(parsed.ok()) << parsed.describe();
  return parsed.config;
}

TEST(LmdeployPolicy, StrictPriorityAcrossGroups) {
  LmdeployPolicy policy(lmdeploy_template());
  policy.enqueue({1, 0, "user_id4", 10, 10}, 0);
  policy.enqueue({2, 0, "user_id0", 10, 10}, 0);
  EXPECT_EQ(policy.next(0), 2u);
  EXPECT_EQ(policy.next(0), 1u);
  EXPECT_EQ(policy.next(0), std::nullopt);
}

TEST(LmdeployPolicy, CountsRequestsNotTokens) {
  // Equal quotas: the users alternate by request count however long their requests are.
  LmdeployPolicy policy(lmdeploy_template());
  for (std::uint64_t i = 0; i < 10; ++i) {
    policy.enqueue({2 * i + 1, 0, "user_id1", 4000, 500}, 0);
    policy.enqueue({2 * i + 2, 0, "user_id2", 10, 5}, 0);
  }
  int long_requests = 0;
  for (int i = 0; i < 10; ++i) {
    const auto id = policy.next(1);
    ASSERT_TRUE(id);
    long_requests += static_cast<int>(*id % 2);
  }
  EXPECT_EQ(long_requests, 5);
}

TEST(LmdeployPolicy, UnknownUsersShareOneQueueThatAlwaysWins) {
  // Unknown users go to the third group's "default" queue, whose usage LMDeploy looked up under
  // "default" but recorded under the real ids, so it always reads as unserved.
  LmdeployPolicy policy(lmdeploy_template());
  policy.enqueue({1, 0, "user_id3", 10, 10}, 0);
  policy.enqueue({2, 0, "user_id3", 10, 10}, 0);
  for (std::uint64_t i = 3; i <= 6; ++i) policy.enqueue({i, 0, "stranger", 10, 10}, 0);
  EXPECT_EQ(policy.next(0), 1u);  // nothing served yet: the first listed queue
  for (std::uint64_t i = 3; i <= 6; ++i) EXPECT_EQ(policy.next(0), i);
  EXPECT_EQ(policy.next(0), 2u);
}

TEST(LmdeployPolicy, UsageWindowForgetsAfterSixtySeconds) {
  LmdeployPolicy policy(lmdeploy_template());
  for (std::uint64_t i = 1; i <= 3; ++i) policy.enqueue({i, 0, "user_id1", 1, 1}, 0);
  ASSERT_TRUE(policy.next(0));
  ASSERT_TRUE(policy.next(0));
  policy.enqueue({10, 0, "user_id2", 1, 1}, 0);
  EXPECT_EQ(policy.next(1), 10u);  // user_id2 has no usage in the window
  policy.enqueue({11, 0, "user_id2", 1, 1}, 0);
  // 70 s later the window is empty again: both read as unserved, the first listed wins.
  EXPECT_EQ(policy.next(70), 3u);
}

}  // namespace
}  // namespace tiergate::qos_sim
