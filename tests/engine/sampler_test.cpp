// engine/sampler.*, engine/stop_matcher.* and engine/sampling_params.*: the semantics of each
// sampling parameter on hand-made logits, stop strings split across pieces, and validation.
#include "engine/sampler.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <map>
#include <set>

#include "engine/stop_matcher.h"

namespace tiergate::engine {
namespace {

std::vector<float> logits_of(std::initializer_list<float> values) { return values; }

std::map<TokenId, int> histogram(const SamplingParams& p, const std::vector<float>& logits, int draws) {
  std::map<TokenId, int> h;
  Sampler s(p, 42);
  for (int i = 0; i < draws; ++i) {
    auto l = logits;
    ++h[s.sample(l, {}).token];
  }
  return h;
}

TEST(Sampler, TemperatureZeroIsArgmax) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p, 1);
  auto l = logits_of({0.1f, 2.0f, 1.9f});
  EXPECT_EQ(s.sample(l, {}).token, 1);
}

TEST(Sampler, TopKAndTopPAndMinPRestrictTheCandidates) {
  const auto logits = logits_of({3.0f, 2.9f, 2.8f, 0.0f, -1.0f});
  SamplingParams k;
  k.top_k = 2;
  for (auto [token, count] : histogram(k, logits, 500)) EXPECT_LT(token, 2);
  SamplingParams tp;
  tp.top_p = 0.3f;  // the top token alone holds ~36%
  EXPECT_EQ(histogram(tp, logits, 200).size(), 1u);
  SamplingParams mp;
  mp.min_p = 0.5f;  // tokens 3 and 4 are far below half of the top probability
  for (auto [token, count] : histogram(mp, logits, 500)) EXPECT_LT(token, 3);
  SamplingParams all;
  EXPECT_EQ(histogram(all, logits, 3000).size(), 5u);
}

TEST(Sampler, PenaltiesFollowTheirDefinitions) {
  SamplingParams rep;
  rep.temperature = 0;
  rep.repetition_penalty = 2.0f;
  Sampler s(rep, 1);
  auto l = logits_of({2.0f, 1.5f});
  const std::vector<TokenId> prompt = {0};
  EXPECT_EQ(s.sample(l, prompt).token, 1);  // 2.0 / 2 = 1.0 < 1.5
  EXPECT_FLOAT_EQ(l[0], 1.0f);
  SamplingParams freq;
  freq.temperature = 0;
  freq.frequency_penalty = 0.4f;
  freq.presence_penalty = 0.1f;
  Sampler f(freq, 1);
  f.accept(0);
  f.accept(0);
  auto l2 = logits_of({2.0f, 1.5f});
  EXPECT_EQ(f.sample(l2, {}).token, 1);  // 2.0 - 0.1 - 0.8 = 1.1
  EXPECT_FLOAT_EQ(l2[0], 1.1f);
}

TEST(Sampler, LogprobsAreOfTheRawDistribution) {
  SamplingParams p;
  p.temperature = 0;
  p.logprobs = true;
  p.top_logprobs = 2;
  Sampler s(p, 1);
  auto l = logits_of({0.0f, std::log(3.0f)});
  const SampledToken t = s.sample(l, {});
  EXPECT_EQ(t.token, 1);
  EXPECT_NEAR(t.logprob, std::log(0.75), 1e-6);
  ASSERT_EQ(t.top.size(), 2u);
  EXPECT_EQ(t.top[1].first, 0);
  EXPECT_NEAR(t.top[1].second, std::log(0.25), 1e-6);
}

TEST(Sampler, SameSeedSameDraws) {
  SamplingParams p;
  const auto logits = logits_of({1, 1, 1, 1, 1, 1, 1, 1});
  Sampler a(p, 7), b(p, 7), c(p, 8);
  std::vector<TokenId> da, db, dc;
  for (int i = 0; i < 20; ++i) {
    auto la = logits, lb = logits, lc = logits;
    da.push_back(a.sample(la, {}).token);
    db.push_back(b.sample(lb, {}).token);
    dc.push_back(c.sample(lc, {}).token);
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(StopMatcher, HoldsBackPossibleStartsAndNeverEmitsTheStop) {
  StopMatcher m({"###", "END"});
  EXPECT_EQ(m.push("Hello #").emit, "Hello ");
  auto r = m.push("# world");
  EXPECT_EQ(r.emit, "## world");
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(m.push("and E").emit, "and ");
  r = m.push("ND tail");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.emit, "");
  StopMatcher n({"lo w"});
  EXPECT_EQ(n.push("hel").emit, "he");  // the "l" may begin "lo w"
  r = n.push("lo world");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.emit, "l");
}

RC_GTEST_PROP(StopMatcherProperty, OutputIsTheTextBeforeTheFirstStop, ()) {
  const auto pieces = *rc::gen::container<std::vector<std::string>>(
      rc::gen::container<std::string>(rc::gen::element('a', 'b', 'c', 'x')));
  const auto stop = *rc::gen::nonEmpty(rc::gen::container<std::string>(rc::gen::element('a', 'b', 'x')));
  std::string text, out;
  for (const auto& p : pieces) text += p;
  StopMatcher m({stop});
  bool stopped = false;
  for (const auto& p : pieces) {
    auto r = m.push(p);
    out += r.emit;
    if (r.stopped) {
      stopped = true;
      break;
    }
  }
  if (!stopped) out += m.flush();
  const auto at = text.find(stop);
  RC_ASSERT(stopped == (at != std::string::npos));
  RC_ASSERT(out == (stopped ? text.substr(0, at) : text));
}

TEST(SamplingParams, ValidationNamesTheField) {
  SamplingParams ok;
  EXPECT_FALSE(validate(ok, 10, 100));
  auto field = [](SamplingParams p, std::size_t prompt = 10) { return validate(p, prompt, 100)->param; };
  SamplingParams p;
  p.max_tokens = 0;
  EXPECT_EQ(field(p), "max_tokens");
  p = {};
  p.max_tokens = 95;
  EXPECT_EQ(field(p), "max_tokens");
  p = {};
  p.temperature = -1;
  EXPECT_EQ(field(p), "temperature");
  p = {};
  p.top_p = 0;
  EXPECT_EQ(field(p), "top_p");
  p = {};
  p.top_k = -2;
  EXPECT_EQ(field(p), "top_k");
  p = {};
  p.presence_penalty = 3;
  EXPECT_EQ(field(p), "presence_penalty");
  p = {};
  p.n = 0;
  EXPECT_EQ(field(p), "n");
  p = {};
  p.stop = {""};
  EXPECT_EQ(field(p), "stop");
  EXPECT_EQ(field(SamplingParams{}, 0), "prompt");
  EXPECT_EQ(field(SamplingParams{}, 100), "prompt");
}

}  // namespace
}  // namespace tiergate::engine
