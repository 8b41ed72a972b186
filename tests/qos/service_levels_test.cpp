// qos/service_levels.*: per-group TTFT, preemptions, 429s and 503s follow each request's moves,
// whichever thread reports first, and memory stays bounded.
#include "qos/service_levels.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <map>
#include <set>

namespace tiergate::qos {
namespace {

using std::chrono::milliseconds;

UsageReport report_of(std::initializer_list<const char*> groups) {
  UsageReport r;
  for (const char* g : groups) r.groups.push_back({.name = g});
  return r;
}

TEST(ServiceLevels, TimeToFirstTokenCountsFromSubmissionOncePerRequest) {
  ServiceLevels levels;
  const Clock::time_point t0{};
  levels.submitted(1, t0);
  levels.queued(1, "Gold");
  levels.first_output(1, t0 + milliseconds(250));
  levels.first_output(1, t0 + milliseconds(900));  // later outputs are not first tokens
  levels.submitted(2, t0);
  levels.queued(2, "Gold");
  levels.first_output(2, t0 + milliseconds(50));
  UsageReport r = report_of({"Platinum", "Gold"});
  levels.fill(r, t0 + milliseconds(1000));
  EXPECT_EQ(r.groups[1].ttft_samples, 2u);
  EXPECT_EQ(r.groups[1].first_outputs, 2u);
  EXPECT_DOUBLE_EQ(r.groups[1].ttft_p50_s, 0.05);
  EXPECT_DOUBLE_EQ(r.groups[1].ttft_p99_s, 0.25);
  EXPECT_EQ(r.groups[0].ttft_samples, 0u);  // no records: left as the queue reported it
}

TEST(ServiceLevels, PercentilesLookBackOneWindowAndTotalsDoNot) {
  ServiceLevels levels;
  const Clock::time_point t0{};
  levels.submitted(1, t0);
  levels.queued(1, "G");
  levels.first_output(1, t0 + std::chrono::seconds(5));  // 5 s, long ago
  const Clock::time_point later = t0 + ServiceLevels::kWindow + std::chrono::seconds(10);
  levels.submitted(2, later);
  levels.queued(2, "G");
  levels.first_output(2, later + milliseconds(100));
  UsageReport r = report_of({"G"});
  levels.fill(r, later + milliseconds(200));
  EXPECT_EQ(r.groups[0].ttft_samples, 1u);
  EXPECT_DOUBLE_EQ(r.groups[0].ttft_p99_s, 0.1);
  EXPECT_EQ(r.groups[0].first_outputs, 2u);
}

TEST(ServiceLevels, EventsBeforeTheGroupIsKnownAreCountedWhenItIs) {
  // The engine thread may start, preempt and finish a request before submit() returns.
  ServiceLevels levels;
  const Clock::time_point t0{};
  levels.submitted(7, t0);
  levels.first_output(7, t0 + milliseconds(30));
  levels.preempted(7);
  levels.left(7);
  EXPECT_EQ(levels.tracked(), 1u);  // still waiting for its group
  levels.queued(7, "Bronze");
  EXPECT_EQ(levels.tracked(), 0u);
  UsageReport r = report_of({"Bronze"});
  levels.fill(r, t0 + milliseconds(40));
  EXPECT_EQ(r.groups[0].ttft_samples, 1u);
  EXPECT_DOUBLE_EQ(r.groups[0].ttft_p99_s, 0.03);
  EXPECT_EQ(r.groups[0].preemptions, 1u);
  EXPECT_EQ(r.groups[0].unavailable_503, 0u);

  levels.submitted(8, t0);
  levels.unavailable(8);  // expired (or stopped) before its submitter got back
  levels.queued(8, "Bronze");
  levels.fill(r, t0);
  EXPECT_EQ(r.groups[0].unavailable_503, 1u);
  EXPECT_EQ(levels.tracked(), 0u);
}

TEST(ServiceLevels, RefusalsAreCountedAndForgotten) {
  ServiceLevels levels;
  levels.submitted(1, Clock::time_point{});
  levels.queue_full(1, "Bronze");
  levels.submitted(2, Clock::time_point{});
  levels.never_queued(2);
  levels.left(1);  // the engine's own end of the refused request comes later: ignored
  levels.left(2);
  EXPECT_EQ(levels.tracked(), 0u);
  UsageReport r = report_of({"Bronze"});
  levels.fill(r, Clock::time_point{});
  EXPECT_EQ(r.groups[0].refused_429, 1u);
  EXPECT_EQ(r.groups[0].unavailable_503, 0u);
}

TEST(ServiceLevels, SamplesPerGroupAreBounded) {
  ServiceLevels levels;
  const Clock::time_point t0{};
  const std::size_t n = ServiceLevels::kSamplesPerGroup + 100;
  for (RequestId id = 1; id <= n; ++id) {
    levels.submitted(id, t0);
    levels.queued(id, "G");
    levels.first_output(id, t0 + milliseconds(id));
    levels.left(id);
  }
  UsageReport r = report_of({"G"});
  levels.fill(r, t0 + milliseconds(n));
  EXPECT_EQ(r.groups[0].ttft_samples, ServiceLevels::kSamplesPerGroup);
  EXPECT_EQ(r.groups[0].first_outputs, n);
  EXPECT_EQ(levels.tracked(), 0u);
}

// Any interleaving of the two threads' reports: every request is forgotten once both its group and
// its end are known, each is counted in exactly one group, and nothing is counted twice.
RC_GTEST_PROP(ServiceLevelsProperty, CountsMatchTheEventsWhateverTheirOrder, ()) {
  ServiceLevels levels;
  const int requests = *rc::gen::inRange(1, 40);
  const std::vector<std::string> groups = {"A", "B", "C"};
  struct Plan {
    std::string group;
    int outcome;  // 0 queued then left, 1 queued then unavailable, 2 queue full, 3 never queued
    int preemptions;
    bool output;
    bool early;  // engine-side events before queued()
  };
  std::map<std::string, std::uint64_t> want_ttft, want_pre, want_429, want_503;
  const Clock::time_point t0{};
  for (int i = 1; i <= requests; ++i) {
    const auto id = static_cast<RequestId>(i);
    Plan p{groups[*rc::gen::inRange<std::size_t>(0, groups.size())], *rc::gen::inRange(0, 4),
           *rc::gen::inRange(0, 3), *rc::gen::arbitrary<bool>(), *rc::gen::arbitrary<bool>()};
    levels.submitted(id, t0);
    if (p.outcome >= 2) {
      if (p.outcome == 2) {
        levels.queue_full(id, p.group);
        ++want_429[p.group];
      } else {
        levels.never_queued(id);
      }
      levels.left(id);  // the engine ends it later; nothing more is counted
      continue;
    }
    auto engine_side = [&] {
      if (p.output) levels.first_output(id, t0 + milliseconds(i));
      for (int k = 0; k < p.preemptions; ++k) levels.preempted(id);
      if (p.outcome == 0) levels.left(id); else levels.unavailable(id);
    };
    if (p.early) {
      engine_side();
      levels.queued(id, p.group);
    } else {
      levels.queued(id, p.group);
      engine_side();
    }
    levels.left(id);  // a duplicate end changes nothing
    want_ttft[p.group] += p.output ? 1 : 0;
    want_pre[p.group] += static_cast<std::uint64_t>(p.preemptions);
    want_503[p.group] += p.outcome == 1 ? 1 : 0;
  }
  RC_ASSERT(levels.tracked() == 0u);
  UsageReport r = report_of({"A", "B", "C"});
  levels.fill(r, t0 + milliseconds(requests + 1));
  for (const GroupUsage& g : r.groups) {
    RC_ASSERT(g.first_outputs == want_ttft[g.name]);
    RC_ASSERT(g.ttft_samples == want_ttft[g.name]);
    RC_ASSERT(g.preemptions == want_pre[g.name]);
    RC_ASSERT(g.refused_429 == want_429[g.name]);
    RC_ASSERT(g.unavailable_503 == want_503[g.name]);
    RC_ASSERT(g.ttft_p50_s <= g.ttft_p99_s);
  }
}

}  // namespace
}  // namespace tiergate::qos
