// kernels/cpu/sampling.*: the CPU reference sampler (the GPU kernel is tested against it) and the
// shared pieces in kernels/sampling.h: penalties, the counter-based draw, parameter validation.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/sampling.h"
#include "kernels/sampling.h"

namespace tiergate::kernels::cpu {
namespace {

std::vector<float> random_logits(std::size_t n, std::uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// One row, no history.
struct OneRow {
  std::int32_t token = -1;
  float logprob = 0;
  SampleTrace trace;
};
OneRow sample_one(const std::vector<float>& logits, const SamplingRowParams& p) {
  OneRow out;
  SamplingBatch b;
  b.logits = logits.data();
  b.rows = 1;
  b.vocab = static_cast<std::int32_t>(logits.size());
  b.params = &p;
  b.tokens = &out.token;
  b.logprobs = &out.logprob;
  sample(b, &out.trace);
  return out;
}

// Tokens in the order the sampler ranks them: scaled logit descending, lower id first on ties.
std::vector<std::int32_t> ranking(const std::vector<float>& logits, float temperature) {
  std::vector<std::int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](std::int32_t a, std::int32_t b) {
    return logits[static_cast<std::size_t>(a)] / temperature > logits[static_cast<std::size_t>(b)] / temperature;
  });
  return ids;
}

TEST(SamplingUniform, IsDeterministicInRangeAndVariesWithStepAndSeed) {
  for (std::uint64_t step = 0; step < 1000; ++step) {
    const double u = sampling_uniform(42, step);
    ASSERT_GE(u, 0.0) << "step " << step;
    ASSERT_LT(u, 1.0) << "step " << step;
    ASSERT_EQ(u, sampling_uniform(42, step)) << "step " << step;
  }
  EXPECT_NE(sampling_uniform(42, 0), sampling_uniform(42, 1));
  EXPECT_NE(sampling_uniform(42, 0), sampling_uniform(43, 0));
  // A fixed value pins the generator: a change here changes every seeded completion.
  EXPECT_EQ(mix64(0), 0u);
  EXPECT_EQ(mix64(1), 0x5692161d100b05e5ULL);
}

TEST(SamplingUniform, FillsSixteenBinsEvenly) {
  constexpr int kDraws = 160000, kBins = 16;
  std::vector<int> bins(kBins, 0);
  for (int i = 0; i < kDraws; ++i) ++bins[static_cast<std::size_t>(sampling_uniform(7, static_cast<std::uint64_t>(i)) * kBins)];
  double chi2 = 0;
  const double expected = double{kDraws} / kBins;
  for (int c : bins) chi2 += (c - expected) * (c - expected) / expected;
  EXPECT_LT(chi2, 50.0) << "15 degrees of freedom: chi2 > 50 has probability < 1e-5";
}

TEST(SamplingPenalties, FollowTheEngineDefinitions) {
  SamplingRowParams p;
  p.repetition_penalty = 2.0f;
  EXPECT_EQ(apply_penalties(3.0f, 0, p), 1.5f);    // positive logits are divided
  EXPECT_EQ(apply_penalties(-3.0f, 0, p), -6.0f);  // negative ones multiplied
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  EXPECT_EQ(apply_penalties(3.0f, 0, p), 1.5f);                   // prompt-only: repetition alone
  EXPECT_EQ(apply_penalties(3.0f, 2, p), 1.5f - (0.5f + 0.5f));   // output: presence + frequency·count
  SamplingRowParams none;
  EXPECT_EQ(apply_penalties(3.0f, 5, none), 3.0f);
}

TEST(SamplingParamsValidation, NamesTheBadField) {
  SamplingRowParams p;
  EXPECT_EQ(sampling_row_error(p), nullptr);
  auto error_of = [](auto mutate) {
    SamplingRowParams q;
    mutate(q);
    const char* e = sampling_row_error(q);
    return std::string(e ? e : "");
  };
  EXPECT_EQ(error_of([](SamplingRowParams& q) { q.temperature = -1; }), "temperature");
  EXPECT_EQ(error_of([](SamplingRowParams& q) { q.temperature = NAN; }), "temperature");
  EXPECT_EQ(error_of([](SamplingRowParams& q) { q.top_p = 0; }), "top_p");
  EXPECT_EQ(error_of([](SamplingRowParams& q) { q.top_p = 1.5f; }), "top_p");
  EXPECT_EQ(error_of([](SamplingRowParams& q) { q.min_p = -0.1f; }), "min_p");
  EXPECT_EQ(error_of([](SamplingRowParams& q) { q.repetition_penalty = 0; }), "repetition_penalty");
  EXPECT_EQ(error_of([](SamplingRowParams& q) { q.presence_penalty = INFINITY; }), "presence_penalty");
  EXPECT_EQ(error_of([](SamplingRowParams& q) { q.frequency_penalty = NAN; }), "frequency_penalty");
}

TEST(CpuSampler, GreedyTakesTheFirstMaximum) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  SamplingRowParams p;
  p.temperature = 0;
  const OneRow r = sample_one(logits, p);
  EXPECT_EQ(r.token, 1);
  EXPECT_TRUE(r.trace.greedy);
}

TEST(CpuSampler, PenaltiesMoveTheGreedyChoice) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.5f, -4.0f};
  const std::vector<std::int32_t> offsets = {0, 2}, hist = {1, 3}, counts = {2, 0};
  SamplingRowParams p;
  p.temperature = 0;
  p.repetition_penalty = 1.5f;  // token 1: 3 / 1.5 = 2, below token 2's 2.5
  std::int32_t token = -1;
  SamplingBatch b;
  b.logits = logits.data();
  b.rows = 1;
  b.vocab = 4;
  b.params = &p;
  b.history_offsets = offsets.data();
  b.history_tokens = hist.data();
  b.history_counts = counts.data();
  b.tokens = &token;
  sample(b);
  EXPECT_EQ(token, 2);
  p.repetition_penalty = 1.0f;
  p.frequency_penalty = 0.2f;  // token 1: 3 - 0.4 = 2.6, still above 2.5
  sample(b);
  EXPECT_EQ(token, 1);
  p.presence_penalty = 0.2f;  // token 1: 3 - 0.6 = 2.4
  sample(b);
  EXPECT_EQ(token, 2);
}

TEST(CpuSampler, LogprobIsTheLogSoftmaxOfTheRawLogits) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  SamplingRowParams p;
  p.temperature = 0;
  const OneRow r = sample_one(logits, p);
  const double z = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  EXPECT_EQ(r.token, 2);
  EXPECT_NEAR(r.logprob, 3.0 - z, 1e-6);
}

TEST(CpuSampler, DrawFrequenciesFollowTheSoftmax) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -3.0f};
  SamplingRowParams p;
  p.temperature = 0.8f;
  p.seed = 1234;
  std::vector<double> expected(logits.size());
  double z = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) z += expected[i] = std::exp(logits[i] / 0.8);
  for (double& e : expected) e /= z;
  constexpr int kDraws = 40000;
  std::vector<int> seen(logits.size(), 0);
  for (int s = 0; s < kDraws; ++s) {
    p.step = static_cast<std::uint64_t>(s);
    ++seen[static_cast<std::size_t>(sample_one(logits, p).token)];
  }
  for (std::size_t i = 0; i < logits.size(); ++i) {
    // 5 standard deviations of a binomial proportion.
    const double sd = std::sqrt(expected[i] * (1 - expected[i]) / kDraws);
    EXPECT_NEAR(seen[i] / double{kDraws}, expected[i], 5 * sd + 1e-4) << "token " << i;
  }
}

TEST(CpuSampler, TopKOfOneIsGreedyWhateverTheSeed) {
  const auto logits = random_logits(1000, 3, 2.0f);
  const auto argmax = static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  SamplingRowParams p;
  p.top_k = 1;
  p.temperature = 1.5f;
  for (std::uint64_t step = 0; step < 50; ++step) {
    p.step = step;
    EXPECT_EQ(sample_one(logits, p).token, argmax) << "step " << step;
  }
}

RC_GTEST_PROP(CpuSamplerProperty, GreedyPicksTheArgmax, ()) {
  const auto n = *rc::gen::inRange<std::size_t>(1, 300);
  // Small integers make ties likely: the first maximum must win.
  const auto ints = *rc::gen::container<std::vector<int>>(n, rc::gen::inRange(-5, 6));
  std::vector<float> logits(ints.begin(), ints.end());
  SamplingRowParams p;
  p.temperature = 0;
  p.seed = *rc::gen::arbitrary<std::uint64_t>();
  const auto argmax = static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  RC_ASSERT(sample_one(logits, p).token == argmax);
}

RC_GTEST_PROP(CpuSamplerProperty, SameSeedAndStepGiveTheSameToken, ()) {
  const auto n = *rc::gen::inRange<std::size_t>(1, 500);
  const auto logits = random_logits(n, *rc::gen::arbitrary<std::uint32_t>(), 3.0f);
  SamplingRowParams p;
  p.temperature = static_cast<float>(*rc::gen::inRange(1, 300)) / 100.0f;
  p.top_k = *rc::gen::inRange(0, 50);
  p.seed = *rc::gen::arbitrary<std::uint64_t>();
  p.step = *rc::gen::arbitrary<std::uint64_t>();
  RC_ASSERT(sample_one(logits, p).token == sample_one(logits, p).token);
}

// The chosen token lies inside every filter, checked from the definitions rather than the code:
// its rank is below top_k, its probability is at least min_p times the best one's, and the mass
// ranked strictly above it is below top_p.
RC_GTEST_PROP(CpuSamplerProperty, ChosenTokenPassesEveryFilter, ()) {
  const auto n = *rc::gen::inRange<std::size_t>(1, 400);
  const auto logits = random_logits(n, *rc::gen::arbitrary<std::uint32_t>(), static_cast<float>(*rc::gen::inRange(1, 60)) / 10.0f);
  SamplingRowParams p;
  p.temperature = static_cast<float>(*rc::gen::inRange(5, 200)) / 100.0f;
  p.top_k = *rc::gen::element(0, 1, 2, 5, 40, 1000);
  p.top_p = *rc::gen::element(1.0f, 0.95f, 0.5f, 0.1f);
  p.min_p = *rc::gen::element(0.0f, 0.05f, 0.3f);
  p.seed = *rc::gen::arbitrary<std::uint64_t>();
  p.step = *rc::gen::inRange<std::uint64_t>(0, 1000);
  const OneRow r = sample_one(logits, p);
  const auto order = ranking(logits, p.temperature);
  const auto rank = static_cast<std::size_t>(std::find(order.begin(), order.end(), r.token) - order.begin());
  RC_ASSERT(rank < n);
  const std::size_t k = p.top_k > 0 ? std::min(n, static_cast<std::size_t>(p.top_k)) : n;
  RC_ASSERT(rank < k);
  const double top = logits[static_cast<std::size_t>(order[0])] / p.temperature;
  std::vector<double> probs(k);
  double z = 0;
  for (std::size_t i = 0; i < k; ++i) z += probs[i] = std::exp(logits[static_cast<std::size_t>(order[i])] / p.temperature - top);
  for (double& q : probs) q /= z;
  RC_ASSERT(probs[rank] >= p.min_p * probs[0] * (1 - 1e-6));
  double above = 0;
  for (std::size_t i = 0; i < rank; ++i) above += probs[i];
  RC_ASSERT(p.top_p >= 1.0f || above < p.top_p + 1e-9);
  RC_ASSERT(r.trace.kept >= 1 && static_cast<std::size_t>(rank) < static_cast<std::size_t>(r.trace.kept));
}

// The definition, written the plain way: rank the whole vocabulary, normalise over the top k,
// drop below min_p, cut at top_p, draw. Returns the token and the draw's distance to the nearest
// edge of a cumulative-mass interval (rounding may legitimately decide a draw closer than that).
std::pair<std::int32_t, double> sample_by_definition(const std::vector<float>& logits, const SamplingRowParams& p) {
  const auto order = ranking(logits, p.temperature);
  const std::size_t k = p.top_k > 0 ? std::min(order.size(), static_cast<std::size_t>(p.top_k)) : order.size();
  const double top = logits[static_cast<std::size_t>(order[0])] / p.temperature;
  std::vector<double> probs(k);
  double z = 0;
  for (std::size_t i = 0; i < k; ++i) z += probs[i] = std::exp(logits[static_cast<std::size_t>(order[i])] / p.temperature - top);
  for (double& q : probs) q /= z;
  std::size_t keep = k;
  while (keep > 1 && probs[keep - 1] < p.min_p * probs[0]) --keep;
  double margin = 1;
  if (p.top_p < 1.0f) {
    double mass = 0;
    std::size_t i = 0;
    for (; i < keep; ++i) {
      mass += probs[i];
      margin = std::min(margin, std::fabs(mass - p.top_p));
      if (mass >= p.top_p) break;
    }
    keep = std::min(keep, i + 1);
  }
  double total = 0;
  for (std::size_t i = 0; i < keep; ++i) total += probs[i];
  const double draw = sampling_uniform(p.seed, p.step) * total;
  double acc = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    margin = std::min(margin, std::fabs(draw - acc));
    acc += probs[i];
    if (draw < acc) return {order[i], std::min(margin, acc - draw)};
  }
  return {order[keep - 1], 0.0};
}

// The sampler ranks only the head of the order a walk can reach; it must draw exactly what the
// definition draws, over small and large vocabularies, flat and peaked logits.
RC_GTEST_PROP(CpuSamplerProperty, DrawsWhatTheDefinitionDraws, ()) {
  const auto n = *rc::gen::element<std::size_t>(1, 7, 300, 5000, 49152);
  auto logits = random_logits(n, *rc::gen::arbitrary<std::uint32_t>(), static_cast<float>(*rc::gen::inRange(1, 60)) / 10.0f);
  for (int peaks = *rc::gen::inRange(0, 4); peaks > 0; --peaks) {
    logits[*rc::gen::inRange<std::size_t>(0, n)] += static_cast<float>(*rc::gen::inRange(0, 25));
  }
  SamplingRowParams p;
  p.temperature = static_cast<float>(*rc::gen::inRange(5, 200)) / 100.0f;
  p.top_k = *rc::gen::element(0, 0, 1, 5, 40, 1000);
  p.top_p = *rc::gen::element(1.0f, 1.0f, 0.999f, 0.95f, 0.5f, 0.1f);
  p.min_p = *rc::gen::element(0.0f, 0.0f, 1e-4f, 0.05f, 0.3f, 1.0f);
  p.seed = *rc::gen::arbitrary<std::uint64_t>();
  p.step = *rc::gen::arbitrary<std::uint64_t>();
  const auto [expected, margin] = sample_by_definition(logits, p);
  const OneRow r = sample_one(logits, p);
  RC_ASSERT(r.token == expected || margin < 1e-9);
}

// As temperature goes to 0, sampling becomes greedy wherever the best logit stands out.
RC_GTEST_PROP(CpuSamplerProperty, TinyTemperatureIsGreedy, ()) {
  const auto n = *rc::gen::inRange<std::size_t>(2, 300);
  auto logits = random_logits(n, *rc::gen::arbitrary<std::uint32_t>(), 2.0f);
  const auto best = *rc::gen::inRange<std::size_t>(0, n);
  logits[best] = *std::max_element(logits.begin(), logits.end()) + 0.05f;
  SamplingRowParams p;
  p.temperature = 1e-3f;  // a gap of 0.05 is e^-50 in probability
  p.seed = *rc::gen::arbitrary<std::uint64_t>();
  p.step = *rc::gen::arbitrary<std::uint64_t>();
  RC_ASSERT(sample_one(logits, p).token == static_cast<std::int32_t>(best));
}

// Rows of a batch are independent: each row's token is what it would be alone.
RC_GTEST_PROP(CpuSamplerProperty, BatchRowsAreIndependent, ()) {
  const auto rows = *rc::gen::inRange(1, 6);
  const auto vocab = *rc::gen::inRange(1, 200);
  const auto logits = random_logits(static_cast<std::size_t>(rows * vocab), *rc::gen::arbitrary<std::uint32_t>(), 2.0f);
  std::vector<SamplingRowParams> params(static_cast<std::size_t>(rows));
  std::vector<std::int32_t> offsets = {0}, hist, counts;
  for (auto& p : params) {
    p.temperature = *rc::gen::element(0.0f, 0.7f, 1.0f);
    p.top_k = *rc::gen::element(0, 3);
    p.repetition_penalty = *rc::gen::element(1.0f, 1.3f);
    p.frequency_penalty = *rc::gen::element(0.0f, 0.5f);
    p.seed = *rc::gen::arbitrary<std::uint64_t>();
    const auto entries = *rc::gen::inRange(0, std::min(vocab, 5) + 1);
    for (int e = 0; e < entries; ++e) {
      hist.push_back(e * (vocab / std::max(entries, 1)));
      counts.push_back(*rc::gen::inRange(0, 4));
    }
    offsets.push_back(static_cast<std::int32_t>(hist.size()));
  }
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(rows));
  SamplingBatch b;
  b.logits = logits.data();
  b.rows = rows;
  b.vocab = vocab;
  b.params = params.data();
  b.history_offsets = offsets.data();
  b.history_tokens = hist.data();
  b.history_counts = counts.data();
  b.tokens = tokens.data();
  sample(b);
  for (std::int32_t r = 0; r < rows; ++r) {
    const std::size_t ur = static_cast<std::size_t>(r);
    std::vector<std::int32_t> one_offsets = {0, offsets[ur + 1] - offsets[ur]};
    std::int32_t token = -1;
    SamplingBatch one = b;
    one.logits = logits.data() + ur * static_cast<std::size_t>(vocab);
    one.rows = 1;
    one.params = &params[ur];
    one.history_offsets = one_offsets.data();
    one.history_tokens = hist.data() + offsets[ur];
    one.history_counts = counts.data() + offsets[ur];
    one.tokens = &token;
    sample(one);
    RC_ASSERT(token == tokens[ur]);
  }
}

// Constrained decoding and logit_bias: a mask and a bias sample exactly what the edited logits
// (disallowed → -inf, biased → raw + bias) sample without them, the token is always allowed, and
// the logprob stays the raw logits' log-softmax.
RC_GTEST_PROP(CpuSamplerProperty, MaskAndBiasSampleWhatTheEditedLogitsSample, ()) {
  const auto n = *rc::gen::element<std::size_t>(1, 2, 33, 300, 5000);
  const auto logits = random_logits(n, *rc::gen::arbitrary<std::uint32_t>(), static_cast<float>(*rc::gen::inRange(1, 60)) / 10.0f);
  std::vector<std::uint32_t> mask(static_cast<std::size_t>(mask_words(static_cast<std::int32_t>(n))), 0);
  const int density = *rc::gen::element(1, 10, 50, 100);  // percent of tokens allowed
  std::mt19937 rng(*rc::gen::arbitrary<std::uint32_t>());
  std::vector<std::int32_t> allowed;
  for (std::size_t v = 0; v < n; ++v) {
    if (static_cast<int>(rng() % 100) < density) allowed.push_back(static_cast<std::int32_t>(v));
  }
  if (allowed.empty()) allowed.push_back(static_cast<std::int32_t>(rng() % n));
  for (std::int32_t v : allowed) mask[static_cast<std::size_t>(v) / 32] |= 1u << (v % 32);
  std::vector<std::int32_t> bias_tokens;
  std::vector<float> bias_values;
  for (std::size_t v = 0; v < n; ++v) {
    if (rng() % 7 == 0) {
      bias_tokens.push_back(static_cast<std::int32_t>(v));
      bias_values.push_back(static_cast<float>(static_cast<int>(rng() % 201) - 100) / (rng() % 2 ? 1.0f : 10.0f));
    }
  }
  SamplingRowParams p;
  p.temperature = *rc::gen::element(0.0f, 0.0f, 0.5f, 1.0f, 1.7f);
  p.top_k = *rc::gen::element(0, 1, 5, 40);
  p.top_p = *rc::gen::element(1.0f, 0.9f, 0.3f);
  p.min_p = *rc::gen::element(0.0f, 0.05f);
  p.repetition_penalty = *rc::gen::element(1.0f, 1.3f);
  p.seed = *rc::gen::arbitrary<std::uint64_t>();
  p.step = *rc::gen::inRange<std::uint64_t>(0, 100);

  const std::int32_t offsets[2] = {0, static_cast<std::int32_t>(bias_tokens.size())};
  const std::int32_t hist_offsets[2] = {0, 1};
  const std::int32_t hist_token = allowed.front(), hist_count = 1;  // a penalised allowed token
  const std::int32_t mask_row = 0;
  std::int32_t token = -1;
  float logprob = 0;
  SamplingBatch b;
  b.logits = logits.data();
  b.rows = 1;
  b.vocab = static_cast<std::int32_t>(n);
  b.params = &p;
  b.history_offsets = hist_offsets;
  b.history_tokens = &hist_token;
  b.history_counts = &hist_count;
  b.bias_offsets = offsets;
  b.bias_tokens = bias_tokens.data();
  b.bias_values = bias_values.data();
  b.token_masks = mask.data();
  b.mask_index = &mask_row;
  b.tokens = &token;
  b.logprobs = &logprob;
  sample(b);
  RC_ASSERT(mask_allows(mask.data(), token));

  std::vector<float> edited(logits);
  for (std::size_t e = 0; e < bias_tokens.size(); ++e) edited[static_cast<std::size_t>(bias_tokens[e])] += bias_values[e];
  for (std::size_t v = 0; v < n; ++v) {
    if (!mask_allows(mask.data(), static_cast<std::int32_t>(v))) edited[v] = -std::numeric_limits<float>::infinity();
  }
  std::int32_t plain = -1;
  SamplingBatch e = b;
  e.logits = edited.data();
  e.bias_offsets = nullptr;
  e.token_masks = nullptr;
  e.mask_index = nullptr;
  e.tokens = &plain;
  e.logprobs = nullptr;
  sample(e);
  RC_ASSERT(plain == token);
  double z = 0;
  const float max = *std::max_element(logits.begin(), logits.end());
  for (float l : logits) z += std::exp(static_cast<double>(l - max));
  RC_ASSERT(std::fabs(logprob - (logits[static_cast<std::size_t>(token)] - max - static_cast<float>(std::log(z)))) < 1e-4);
}

TEST(CpuSampler, ABiasOfMinus100BansTheGreedyTokenAndPlus100ForcesAnother) {
  const std::vector<float> logits = {1.0f, 5.0f, 2.0f, 0.0f};
  SamplingRowParams p;
  p.temperature = 0;
  const std::int32_t offsets[2] = {0, 1};
  std::int32_t bias_token = 1, token = -1;
  float bias = -100;
  SamplingBatch b;
  b.logits = logits.data();
  b.rows = 1;
  b.vocab = 4;
  b.params = &p;
  b.bias_offsets = offsets;
  b.bias_tokens = &bias_token;
  b.bias_values = &bias;
  b.tokens = &token;
  sample(b);
  EXPECT_EQ(token, 2);
  bias_token = 3;
  bias = 100;
  p.temperature = 1;  // sampling, not greedy: 100 logits above the rest is all but certain
  for (std::uint64_t step = 0; step < 50; ++step) {
    p.step = step;
    sample(b);
    EXPECT_EQ(token, 3);
  }
}

}  // namespace
}  // namespace tiergate::kernels::cpu
