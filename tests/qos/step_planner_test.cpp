// qos/step_planner.cpp (AdmissionQueue::plan_step, memory_victim): how one engine step's sequences
// and tokens are split (DESIGN.md §3 "Inside the running batch too", "Isolation", "Preemption"),
// one behaviour per test, then properties over random running sets and queues.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "qos/admission_queue.h"
#include "qos/config_parser.h"

namespace tiergate::qos {
namespace {

const Clock::time_point kT0{};

std::shared_ptr<const Config> config_from(const std::string& text) {
  ConfigParseResult result = parse_config(text, "test.json");
  EXPECT_TRUE(result.ok()) << result.describe();
  return result.config;
}

// Platinum: p. Gold: a (70), b (30), z (0). Bronze: c.
std::string three_groups(const std::string& platinum_limits = "") {
  return R"({"enable_user_qos": true, "user_groups": ["Platinum", "Gold", "Bronze"],
    "user_group_map": {"Platinum": [{"id": "p", "quota_pct": 100}],
                       "Gold": [{"id": "a", "quota_pct": 70}, {"id": "b", "quota_pct": 30}, {"id": "z", "quota_pct": 0}],
                       "Bronze": [{"id": "c", "quota_pct": 100}]})" +
         (platinum_limits.empty() ? "" : R"(, "group_limits": {"Platinum": )" + platinum_limits + "}") + "}";
}

class StepPlannerTest : public ::testing::Test {
 protected:
  explicit StepPlannerTest(const std::string& config = three_groups()) : queue(config_from(config)) {}

  // Starts a request for `user` and lists it as running with the given work.
  RequestId run(const std::string& user, std::int64_t decode_seqs, std::int64_t prefill_tokens = 0,
                bool first_token_pending = false, std::int64_t blocks = 1) {
    const RequestId id = next_id++;
    EXPECT_EQ(queue.enqueue({id, user, 10, 10}, kT0).status, EnqueueStatus::kQueued);
    EXPECT_EQ(queue.next(kT0)->id, id);
    running.push_back({id, decode_seqs, prefill_tokens > 0 ? 1 : 0, prefill_tokens, blocks, first_token_pending});
    return id;
  }
  RequestId wait(const std::string& user, std::int64_t prompt = 10) {
    const RequestId id = next_id++;
    EXPECT_EQ(queue.enqueue({id, user, prompt, 10}, kT0).status, EnqueueStatus::kQueued);
    return id;
  }
  StepPlan plan(std::int64_t seqs, std::int64_t tokens, std::int64_t free_blocks = 1000) {
    StepPlan p;
    queue.plan_step(running, StepCapacity{seqs, tokens, free_blocks, 16}, kT0, p);
    return p;
  }
  // Decode tokens the plan gives each user's requests, by request id prefix.
  static std::set<RequestId> decoding(const StepPlan& p) {
    std::set<RequestId> ids;
    for (const StepGrant& g : p.run) {
      if (g.decode) ids.insert(g.id);
    }
    return ids;
  }

  AdmissionQueue queue;
  std::vector<RunningWork> running;
  RequestId next_id = 1;
};

TEST_F(StepPlannerTest, HigherGroupsWorkComesFirstEveryStep) {
  const RequestId bronze = run("c", 1);
  const RequestId platinum = run("p", 1);
  const StepPlan p = plan(1, 100);
  EXPECT_EQ(decoding(p), std::set<RequestId>{platinum});  // Bronze rests this step
  EXPECT_EQ(decoding(plan(2, 100)), (std::set<RequestId>{platinum, bronze}));
}

TEST_F(StepPlannerTest, SlotsAreSharedByQuotaInsideAGroup) {
  // 20 running decodes each, 10 sequences a step: 70 % of the decode tokens to a, 30 % to b.
  std::set<RequestId> of_a, of_b;
  for (int i = 0; i < 20; ++i) of_a.insert(run("a", 1));
  for (int i = 0; i < 20; ++i) of_b.insert(run("b", 1));
  const StepPlan p = plan(10, 512);
  std::size_t a = 0, b = 0;
  for (RequestId id : decoding(p)) (of_a.count(id) ? a : b) += 1;
  EXPECT_EQ(a, 7u);
  EXPECT_EQ(b, 3u);
}

TEST_F(StepPlannerTest, ALongPromptBuysNoShare) {
  // a prefills a 1000-token prompt, b has 100 decodes: 100 tokens a step are split so that a's
  // weighted tokens (1 each) / 0.7 and b's (2 each) / 0.3 stay within one prefill piece.
  const RequestId long_prompt = run("a", 0, 1000, true);
  for (int i = 0; i < 100; ++i) run("b", 1);
  const StepPlan p = plan(200, 100);
  double wa = 0, wb = 0;
  for (const StepGrant& g : p.run) {
    if (g.id == long_prompt) {
      wa += static_cast<double>(g.prefill_tokens);
    } else if (g.decode) {
      wb += 2;
    }
  }
  EXPECT_EQ(wa + wb / 2, 100);  // the whole budget is used
  EXPECT_LE(std::abs(wa / 0.7 - wb / 0.3), 32 / 0.3 + 1e-9) << wa << " " << wb;
}

TEST_F(StepPlannerTest, ALongPromptDoesNotFillTheTokensAUserShortOfSequencesCannotUse) {
  // a (70) has 7 decodes running and more waiting; b (30) prefills a 1000-token prompt. 8
  // sequences a step: a cannot use the step's tokens, and b taking them all (work conservation)
  // would leave it ~90 times its share of this step, repaid by starving it for the next ~70 steps.
  for (int i = 0; i < 7; ++i) run("a", 1);
  const RequestId long_prompt = run("b", 0, 1000, true);
  for (int i = 0; i < 5; ++i) wait("a", 10);
  const StepPlan p = plan(8, 512);
  double wa = 0, wb = 0;
  for (const StepGrant& g : p.run) {
    if (g.id == long_prompt) wb += static_cast<double>(g.prefill_tokens);
    if (g.decode) wa += 2;
  }
  for (const StepAdmission& a : p.admit) wa += static_cast<double>(a.prefill_tokens);
  EXPECT_GT(wb, 0);
  EXPECT_LE(std::abs(wa / 0.7 - wb / 0.3), 32 / 0.3 + 1e-9) << wa << " " << wb;
}

TEST_F(StepPlannerTest, ScavengersTakeOnlyWhatOthersLeave) {
  const RequestId scavenger = run("z", 1);
  for (int i = 0; i < 3; ++i) run("a", 1);
  EXPECT_EQ(decoding(plan(3, 100)).count(scavenger), 0u);
  EXPECT_EQ(decoding(plan(4, 100)).count(scavenger), 1u);
}

TEST_F(StepPlannerTest, WaitingRequestsStartInFairOrderWithTheirFirstPiece) {
  const RequestId first = wait("b", 100);
  wait("b", 100);
  const StepPlan p = plan(4, 40);
  ASSERT_FALSE(p.admit.empty());
  EXPECT_EQ(p.admit[0].id, first);
  EXPECT_EQ(p.admit[0].group, "Gold");
  EXPECT_TRUE(p.admit[0].first_start);
  std::int64_t tokens = 0;
  for (const StepAdmission& a : p.admit) tokens += a.prefill_tokens;
  EXPECT_EQ(tokens, 40);
  EXPECT_EQ(queue.running(), p.admit.size());
}

class IsolationTest : public StepPlannerTest {
 protected:
  IsolationTest() : StepPlannerTest(three_groups(R"({"lower_groups_step_tokens": 5})")) {}
};

TEST_F(StepPlannerTest, AFirstTokenOnItsWayPausesLowerGroups) {
  for (int i = 0; i < 8; ++i) run("c", 1);
  run("p", 0, 50, /*first_token_pending=*/true);
  const StepPlan p = plan(64, 512);
  ASSERT_EQ(p.run.size(), 1u);  // only the Platinum prefill: the step is as short as on an idle server
  EXPECT_EQ(p.run[0].prefill_tokens, 50);
}

TEST_F(IsolationTest, LowerGroupsGetTheConfiguredTokensMeanwhile) {
  for (int i = 0; i < 8; ++i) run("c", 1);
  run("p", 0, 50, /*first_token_pending=*/true);
  EXPECT_EQ(decoding(plan(64, 512)).size(), 5u);
  // Once it has its first token, Platinum's decodes no longer hold Bronze back.
  running.back() = {running.back().id, 1, 0, 0, 1, false};
  EXPECT_EQ(decoding(plan(64, 512)).size(), 9u);
}

TEST_F(StepPlannerTest, AHigherRequestShortOfBlocksPreemptsTheLowestMostRecentFirst) {
  const RequestId gold = run("a", 1, 0, false, 4);
  const RequestId old_bronze = run("c", 1, 0, false, 4);
  const RequestId new_bronze = run("c", 1, 0, false, 4);
  const RequestId platinum = wait("p", 60);  // needs 4 blocks of 16 (60 tokens + 1)
  const StepPlan p = plan(64, 512, /*free_blocks=*/1);
  EXPECT_EQ(p.preempt, std::vector<RequestId>{new_bronze});
  ASSERT_EQ(p.admit.size(), 1u);
  EXPECT_EQ(p.admit[0].id, platinum);
  EXPECT_TRUE(decoding(p).empty());  // and its first token is on its way: the lower groups rest
  running.pop_back();                // the engine preempted the victim
  running.push_back({platinum, 1, 0, 0, 4, false});
  EXPECT_EQ(decoding(plan(64, 512, 0)), (std::set<RequestId>{gold, old_bronze, platinum}));
}

TEST_F(StepPlannerTest, ANoFitHeadNeverPreemptsItsOwnGroupAndBlocksLowerStarts) {
  const RequestId gold = run("a", 1, 0, false, 8);
  wait("b", 200);  // 13 blocks; only Gold's own could make room
  wait("c", 1);    // fits, but must not jump the Gold request
  const StepPlan p = plan(64, 512, /*free_blocks=*/2);
  EXPECT_TRUE(p.preempt.empty());
  EXPECT_TRUE(p.admit.empty());
  EXPECT_EQ(decoding(p), std::set<RequestId>{gold});  // running work goes on
}

TEST_F(StepPlannerTest, MemoryVictimIsTheLowestGroupsMostOverServedUsersLatest) {
  run("a", 1);
  const RequestId b1 = run("b", 1);
  const RequestId b2 = run("b", 1);
  queue.charge(b1, 0, 100);  // b is over its share
  EXPECT_EQ(queue.memory_victim(running), b2);
  const RequestId c = run("c", 1);
  EXPECT_EQ(queue.memory_victim(running), c);
}

TEST_F(StepPlannerTest, PrioritiesFollowTheConfigInForce) {
  // A reload that puts c above everyone: its running request is no longer the victim, and it is
  // served first (running requests carry no priority of their own).
  const RequestId a = run("a", 1);
  const RequestId c = run("c", 1);
  EXPECT_EQ(queue.memory_victim(running), c);
  queue.reload(config_from(R"({"enable_user_qos": true, "user_groups": ["Top", "Gold"],
      "user_group_map": {"Top": [{"id": "c", "quota_pct": 1}], "Gold": [{"id": "a", "quota_pct": 1}]}})"));
  EXPECT_EQ(queue.memory_victim(running), a);
  EXPECT_EQ(decoding(plan(1, 100)), std::set<RequestId>{c});
}

TEST(StepPlannerFcfs, QosOffServesEveryRunningRequestThenStartsInArrivalOrder) {
  AdmissionQueue queue(config_from(R"({"enable_user_qos": false})"));
  std::vector<RunningWork> running;
  for (RequestId id = 1; id <= 3; ++id) {
    ASSERT_EQ(queue.enqueue({id, "u" + std::to_string(id), 10, 10}, kT0).status, EnqueueStatus::kQueued);
    ASSERT_EQ(queue.next(kT0)->id, id);
    running.push_back({id, 1, 0, 0, 1, false});
  }
  queue.charge(RequestId{1}, 0, 10000);  // counters play no part in FCFS
  for (RequestId id = 4; id <= 6; ++id) {
    ASSERT_EQ(queue.enqueue({id, "u" + std::to_string(id % 2), 10, 10}, kT0).status, EnqueueStatus::kQueued);
  }
  StepPlan p;
  queue.plan_step(running, StepCapacity{5, 512, 100, 16}, kT0, p);
  EXPECT_EQ(p.run.size(), 3u);
  ASSERT_EQ(p.admit.size(), 2u);
  EXPECT_EQ(p.admit[0].id, 4u);
  EXPECT_EQ(p.admit[1].id, 5u);
}

// Random running sets and queues over three groups: the plan respects the step's capacity and
// every request's demand, only preempts strictly below what it starts, follows strict priority
// (lower-group work only once every higher running decode got its token) and the isolation cap.
RC_GTEST_PROP(StepPlannerProperty, CapacityDemandPriorityAndIsolation, ()) {
  const int cap = *rc::gen::inRange(0, 20);
  AdmissionQueue queue(config_from(three_groups(R"({"lower_groups_step_tokens": )" + std::to_string(cap) + "}")));
  const std::vector<std::string> users = {"p", "a", "b", "z", "c"};
  const auto group_of = [](const std::string& u) { return u == "p" ? 0 : u == "c" ? 2 : 1; };
  std::vector<RunningWork> running;
  std::map<RequestId, std::string> user_of;
  RequestId id = 1;
  const int n_running = *rc::gen::inRange(0, 40);
  for (int i = 0; i < n_running; ++i, ++id) {
    const std::string user = *rc::gen::elementOf(users);
    RC_ASSERT(queue.enqueue({id, user, 10, 10}, kT0).status == EnqueueStatus::kQueued);
    RC_ASSERT(queue.next(kT0)->id == id);
    const bool decoding = *rc::gen::arbitrary<bool>();
    const std::int64_t prefill = decoding ? 0 : *rc::gen::inRange<std::int64_t>(1, 300);
    running.push_back({id, decoding ? *rc::gen::inRange<std::int64_t>(1, 3) : 0, decoding ? 0 : 1, prefill,
                       *rc::gen::inRange<std::int64_t>(1, 20), !decoding && *rc::gen::arbitrary<bool>()});
    user_of[id] = user;
  }
  const int n_waiting = *rc::gen::inRange(0, 20);
  std::map<RequestId, std::int64_t> prompt_of;
  for (int i = 0; i < n_waiting; ++i, ++id) {
    const std::string user = *rc::gen::elementOf(users);
    prompt_of[id] = *rc::gen::inRange<std::int64_t>(1, 300);
    RC_ASSERT(queue.enqueue({id, user, prompt_of[id], 10}, kT0).status == EnqueueStatus::kQueued);
    user_of[id] = user;
  }
  for (int i = 0; i < 5; ++i) queue.charge(users[static_cast<std::size_t>(*rc::gen::inRange(0, 5))], 0, *rc::gen::inRange(0, 100));
  const StepCapacity capacity{*rc::gen::inRange<std::int64_t>(1, 64), *rc::gen::inRange<std::int64_t>(1, 512),
                              *rc::gen::inRange<std::int64_t>(0, 100), 16};
  StepPlan p;
  queue.plan_step(running, capacity, kT0, p);

  std::map<RequestId, const RunningWork*> work;
  for (const RunningWork& w : running) work[w.id] = &w;
  std::int64_t seqs = 0, tokens = 0, lower_tokens[3] = {0, 0, 0};
  std::set<RequestId> seen;
  for (const StepGrant& g : p.run) {
    RC_ASSERT(work.count(g.id) == 1);
    RC_ASSERT(seen.insert(g.id).second);
    const RunningWork& w = *work[g.id];
    RC_ASSERT(g.prefill_tokens <= w.prefill_tokens);
    RC_ASSERT(!g.decode || w.decode_seqs > 0);
    seqs += (g.decode ? w.decode_seqs : 0) + (g.prefill_tokens > 0 ? w.prefill_seqs : 0);
    const std::int64_t t = (g.decode ? w.decode_seqs : 0) + g.prefill_tokens;
    tokens += t;
    lower_tokens[group_of(user_of[g.id])] += t;
  }
  std::int64_t blocks_needed = 0;
  int highest_admitted = 3;
  for (const StepAdmission& a : p.admit) {
    RC_ASSERT(work.count(a.id) == 0);
    RC_ASSERT(seen.insert(a.id).second);
    seqs += 1;
    tokens += a.prefill_tokens;
    lower_tokens[group_of(user_of[a.id])] += a.prefill_tokens;
    RC_ASSERT(a.prefill_tokens >= 1 && a.prefill_tokens <= prompt_of[a.id]);
    blocks_needed += (prompt_of[a.id] + 16) / 16;  // the prompt and its first generated token
    highest_admitted = std::min(highest_admitted, group_of(user_of[a.id]));
  }
  RC_ASSERT(seqs <= capacity.max_seqs);
  RC_ASSERT(tokens <= capacity.token_budget);
  std::int64_t freed = 0;
  for (RequestId v : p.preempt) {
    RC_ASSERT(work.count(v) == 1);
    RC_ASSERT(seen.count(v) == 0);                         // a victim gets no work
    RC_ASSERT(group_of(user_of[v]) > highest_admitted);  // only for a strictly higher start
    freed += work[v]->blocks;
  }
  RC_ASSERT(blocks_needed <= capacity.free_blocks + freed);
  // Strict priority: if any request of group g got work, every running decode of a higher group
  // that would have fit got its token.
  for (const RunningWork& w : running) {
    const int g = group_of(user_of[w.id]);
    if (w.decode_seqs == 0 || std::count(p.preempt.begin(), p.preempt.end(), w.id)) continue;
    const bool served = std::any_of(p.run.begin(), p.run.end(), [&](const StepGrant& s) { return s.id == w.id && s.decode; });
    bool lower_served = false;
    for (const StepGrant& s : p.run) lower_served |= group_of(user_of[s.id]) > g;
    for (const StepAdmission& s : p.admit) lower_served |= group_of(user_of[s.id]) > g;
    if (lower_served && w.decode_seqs == 1) RC_ASSERT(served);
  }
  // Isolation: while Platinum has a first token on its way, the groups below share `cap` tokens.
  const bool protecting =
      std::any_of(running.begin(), running.end(), [&](const RunningWork& w) {
        return group_of(user_of[w.id]) == 0 && w.first_token_pending &&
               !std::count(p.preempt.begin(), p.preempt.end(), w.id);
      }) ||
      std::any_of(p.admit.begin(), p.admit.end(), [&](const StepAdmission& a) { return group_of(user_of[a.id]) == 0; });
  if (protecting) RC_ASSERT(lower_tokens[1] + lower_tokens[2] <= cap);
  // Starts are running in the queue's eyes; victims stay running until the engine preempts them.
  RC_ASSERT(queue.running() == running.size() + p.admit.size());
}

}  // namespace
}  // namespace tiergate::qos
