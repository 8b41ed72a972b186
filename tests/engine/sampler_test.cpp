// engine/sampler.*, engine/stop_matcher.* and engine/sampling_params.*: the semantics of each
// sampling parameter on hand-made logits, stop strings split across pieces, and validation.
#include "engine/sampler.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "engine/stop_matcher.h"

namespace tiergate::engine {
namespace {

std::vector<float> logits_of(std::initializer_list<float> values) { return values; }

// `draws` successive tokens of one sequence (each accepted, so each is a fresh draw).
std::map<TokenId, int> histogram(const SamplingParams& p, const std::vector<float>& logits, int draws) {
  std::map<TokenId, int> h;
  Sampler s(p, 42, {});
  for (int i = 0; i < draws; ++i) {
    const TokenId t = s.sample(logits).token;
    ++h[t];
    s.accept(t);
  }
  return h;
}

TEST(Sampler, TemperatureZeroIsArgmax) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p, 1, {});
  EXPECT_EQ(s.sample(logits_of({0.1f, 2.0f, 1.9f})).token, 1);
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
  const std::vector<TokenId> prompt = {0};
  EXPECT_EQ(Sampler(rep, 1, prompt).sample(logits_of({2.0f, 1.5f})).token, 1);  // 2.0 / 2 = 1.0 < 1.5
  EXPECT_EQ(Sampler(rep, 1, prompt).sample(logits_of({2.1f, 1.0f})).token, 0);  // 1.05 > 1.0
  EXPECT_EQ(Sampler(rep, 1, {}).sample(logits_of({2.0f, 1.5f})).token, 0);      // nothing seen yet
  Sampler seen_in_output(rep, 1, {});
  seen_in_output.accept(0);
  EXPECT_EQ(seen_in_output.sample(logits_of({2.0f, 1.5f})).token, 1);  // output counts too

  SamplingParams freq;
  freq.temperature = 0;
  freq.frequency_penalty = 0.4f;
  freq.presence_penalty = 0.1f;
  Sampler f(freq, 1, prompt);  // presence and frequency ignore the prompt
  EXPECT_EQ(f.sample(logits_of({2.0f, 1.5f})).token, 0);
  f.accept(0);
  f.accept(0);
  EXPECT_EQ(f.sample(logits_of({2.0f, 1.5f})).token, 1);  // 2.0 - 0.1 - 0.8 = 1.1
  EXPECT_EQ(f.sample(logits_of({2.0f, 1.05f})).token, 0);  // 1.1 > 1.05
}

TEST(Sampler, LogprobsAreOfTheRawDistribution) {
  SamplingParams p;
  p.temperature = 0;
  p.logprobs = true;
  p.top_logprobs = 2;
  p.repetition_penalty = 10.0f;  // moves the choice, not the logprobs
  const std::vector<TokenId> prompt = {1};
  const SampledToken t = Sampler(p, 1, prompt).sample(logits_of({0.2f, 0.2f + std::log(3.0f)}));
  EXPECT_EQ(t.token, 0);
  EXPECT_NEAR(t.logprob, std::log(0.25), 1e-6);
  ASSERT_EQ(t.top.size(), 2u);
  EXPECT_EQ(t.top[0].first, 1);
  EXPECT_NEAR(t.top[0].second, std::log(0.75), 1e-6);
  EXPECT_EQ(t.top[1].first, 0);
  EXPECT_NEAR(t.top[1].second, std::log(0.25), 1e-6);
}

TEST(Sampler, SameSeedSameDraws) {
  SamplingParams p;
  const auto logits = logits_of({1, 1, 1, 1, 1, 1, 1, 1});
  Sampler a(p, 7, {}), b(p, 7, {}), c(p, 8, {});
  std::vector<TokenId> da, db, dc;
  for (int i = 0; i < 20; ++i) {
    da.push_back(a.sample(logits).token);
    db.push_back(b.sample(logits).token);
    dc.push_back(c.sample(logits).token);
    a.accept(da.back());
    b.accept(db.back());
    c.accept(dc.back());
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(TopLogprobs, MostLikelyFirstLowerIdOnTies) {
  const auto top = top_logprobs(logits_of({1.0f, 3.0f, 1.0f, 2.0f}), 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].first, 1);
  EXPECT_EQ(top[1].first, 3);
  EXPECT_EQ(top[2].first, 0);
  EXPECT_TRUE(top_logprobs(logits_of({1.0f}), 0).empty());
  EXPECT_EQ(top_logprobs(logits_of({1.0f, 2.0f}), 5).size(), 2u);
}

// A sequence's params with arbitrary valid values.
rc::Gen<SamplingParams> arbitrary_params() {
  return rc::gen::exec([] {
    SamplingParams p;
    p.temperature = *rc::gen::element(0.0f, 0.5f, 1.0f, 1.7f);
    p.top_k = *rc::gen::inRange(-1, 6);
    p.top_p = *rc::gen::element(1.0f, 0.9f, 0.5f, 0.1f);
    p.min_p = *rc::gen::element(0.0f, 0.05f, 0.3f);
    p.repetition_penalty = *rc::gen::element(1.0f, 1.3f, 0.8f);
    p.presence_penalty = *rc::gen::element(0.0f, 0.5f, -0.5f);
    p.frequency_penalty = *rc::gen::element(0.0f, 0.3f, -1.0f);
    p.logprobs = *rc::gen::arbitrary<bool>();
    return p;
  });
}

// The sequence's draws, batched with others in one SamplingStep (as the engine sends them to the
// executor, several on one shared logit row), give exactly the tokens and logprobs it gets alone.
RC_GTEST_PROP(SamplerProperty, BatchedDrawsEqualLoneDraws, ()) {
  const int vocab = *rc::gen::inRange(1, 40);
  const int rows = *rc::gen::inRange(1, 4);
  const int seqs = *rc::gen::inRange(1, 6);
  std::vector<float> logits(static_cast<std::size_t>(rows * vocab));
  for (float& l : logits) l = static_cast<float>(*rc::gen::inRange(-400, 400)) / 100.0f;
  std::vector<Sampler> samplers;
  std::vector<std::int32_t> row_of;
  for (int i = 0; i < seqs; ++i) {
    const auto prompt = *rc::gen::container<std::vector<TokenId>>(rc::gen::inRange(0, vocab));
    samplers.emplace_back(*arbitrary_params(), *rc::gen::arbitrary<std::uint64_t>(), prompt);
    for (int k = *rc::gen::inRange(0, 4); k > 0; --k) samplers.back().accept(*rc::gen::inRange(0, vocab));
    row_of.push_back(*rc::gen::inRange(0, rows));
  }
  SamplingStep step;
  for (int i = 0; i < seqs; ++i) samplers[static_cast<std::size_t>(i)].add_draw(step, row_of[static_cast<std::size_t>(i)]);
  SampledStep out;
  sample_on_host(logits, static_cast<std::size_t>(vocab), step, out);
  for (int i = 0; i < seqs; ++i) {
    const auto& s = samplers[static_cast<std::size_t>(i)];
    const std::span<const float> row(logits.data() + row_of[static_cast<std::size_t>(i)] * vocab,
                                     static_cast<std::size_t>(vocab));
    const SampledToken alone = s.sample(row);
    const SampledToken batched = s.result(step, out, static_cast<std::size_t>(i), static_cast<std::size_t>(vocab));
    RC_ASSERT(alone.token == batched.token);
    RC_ASSERT(alone.logprob == batched.logprob);
  }
}

// Greedy with penalties picks the argmax of the logits penalised by their definitions.
RC_GTEST_PROP(SamplerProperty, GreedyPicksTheArgmaxOfThePenalisedLogits, ()) {
  const int vocab = *rc::gen::inRange(1, 30);
  std::vector<float> logits(static_cast<std::size_t>(vocab));
  for (float& l : logits) l = static_cast<float>(*rc::gen::inRange(-300, 300)) / 64.0f;  // exact in float
  SamplingParams p = *arbitrary_params();
  p.temperature = 0;
  const auto prompt = *rc::gen::container<std::vector<TokenId>>(rc::gen::inRange(0, vocab));
  const auto output = *rc::gen::container<std::vector<TokenId>>(rc::gen::inRange(0, vocab));
  Sampler s(p, 1, prompt);
  for (TokenId t : output) s.accept(t);
  std::vector<float> expect = logits;
  for (int t = 0; t < vocab; ++t) {
    const auto count = std::count(output.begin(), output.end(), t);
    const bool seen = count > 0 || std::find(prompt.begin(), prompt.end(), t) != prompt.end();
    float& l = expect[static_cast<std::size_t>(t)];
    if (seen && p.repetition_penalty != 1.0f) l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    if (count > 0) l -= std::fma(p.frequency_penalty, static_cast<float>(count), p.presence_penalty);
  }
  const auto best = std::max_element(expect.begin(), expect.end()) - expect.begin();
  RC_ASSERT(s.sample(logits).token == static_cast<TokenId>(best));
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
