#include "kernels/cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "kernels/check.h"

namespace tiergate::kernels::cpu {
namespace {

// log-softmax of the raw logits at `token`, as the engine's fill_logprobs computes it.
float raw_logprob(const float* logits, std::size_t vocab, std::size_t token) {
  const float max = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (std::size_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max));
  const float log_z = max + static_cast<float>(std::log(sum));
  return logits[token] - log_z;
}

using Candidate = std::pair<float, std::int32_t>;  // (scaled logit, token)

// The sampler's order: scaled logit descending, then token ascending. (A function object, so that
// the sorts inline it.)
constexpr auto before = [](const Candidate& a, const Candidate& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
};

// The top-p cut and the draw over `ranked`, a prefix of the kept candidates in the sampler's order.
// `kept` candidates survive top-k and min-p (ranked may hold fewer: the walks must end within
// it), of total probability `kept_mass`; prob(i) is ranked[i]'s top-k-normalised probability.
template <class Prob>
std::int32_t cut_and_draw(const std::vector<Candidate>& ranked, std::size_t kept, double kept_mass, Prob prob,
                          const SamplingRowParams& p, SampleTrace& trace) {
  TG_CHECK(!ranked.empty() && ranked.size() <= kept);
  std::size_t keep = kept;
  double total = kept_mass;
  if (p.top_p < 1.0f) {  // the smallest prefix whose mass reaches top_p
    double mass = 0;
    std::size_t i = 0;
    for (; i < ranked.size(); ++i) {
      mass += prob(i);
      trace.top_p_margin = std::min(trace.top_p_margin, std::fabs(mass - static_cast<double>(p.top_p)));
      if (mass >= p.top_p) break;
    }
    TG_CHECK(i < ranked.size() || ranked.size() == kept);
    keep = std::min(kept, i + 1);
    total = mass;
  }
  const double draw = sampling_uniform(p.seed, p.step) * total;
  trace.kept = static_cast<std::int32_t>(keep);
  trace.kept_mass = total;
  trace.draw = draw;
  double acc = 0;
  const std::size_t walk = std::min(keep, ranked.size());
  for (std::size_t i = 0; i < walk; ++i) {
    const double before_mass = acc;
    acc += prob(i);
    if (draw < acc) {
      trace.draw_margin = std::min(draw - before_mass, acc - draw);
      return ranked[i].second;
    }
  }
  TG_CHECK(walk == keep);  // only rounding leaves the draw past the last kept candidate
  trace.draw_margin = 0;
  return ranked[keep - 1].second;
}

// A row's sparse inputs: penalty history, logit bias and allowed-token mask (null when none).
struct RowExtras {
  const std::int32_t* hist_tokens = nullptr;
  const std::int32_t* hist_counts = nullptr;
  std::size_t hist_size = 0;
  const std::int32_t* bias_tokens = nullptr;
  const float* bias_values = nullptr;
  std::size_t bias_size = 0;
  const std::uint32_t* mask = nullptr;
};

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Each token of a sparse list once, in [0, vocab).
void check_distinct(const std::int32_t* tokens, std::size_t size, std::size_t vocab, std::vector<char>& seen) {
  if (size == 0) return;
  seen.assign(vocab, 0);
  for (std::size_t e = 0; e < size; ++e) {
    const std::int32_t t = tokens[e];
    TG_CHECK(t >= 0 && static_cast<std::size_t>(t) < vocab);
    TG_CHECK(!seen[static_cast<std::size_t>(t)]);  // tokens of a row must be distinct
    seen[static_cast<std::size_t>(t)] = 1;
  }
}

std::int32_t sample_row(const float* raw, std::size_t vocab, const SamplingRowParams& p, const RowExtras& x,
                        SampleTrace& trace) {
  std::vector<float> logits(raw, raw + vocab);
  std::vector<char> seen;
  if (x.mask) {
    bool any = false;
    for (std::size_t v = 0; v < vocab; ++v) {
      if (!mask_allows(x.mask, static_cast<std::int32_t>(v))) {
        logits[v] = kNegInf;
      } else {
        any = true;
      }
    }
    TG_CHECK(any);  // the engine never sends a mask that allows nothing
  }
  check_distinct(x.bias_tokens, x.bias_size, vocab, seen);
  for (std::size_t e = 0; e < x.bias_size; ++e) {
    float& l = logits[static_cast<std::size_t>(x.bias_tokens[e])];
    if (l != kNegInf) l += x.bias_values[e];
  }
  check_distinct(x.hist_tokens, x.hist_size, vocab, seen);
  for (std::size_t e = 0; e < x.hist_size; ++e) {
    float& l = logits[static_cast<std::size_t>(x.hist_tokens[e])];
    if (l != kNegInf) l = apply_penalties(l, x.hist_counts[e], p);
  }

  if (p.temperature == 0.0f) {
    trace.greedy = true;
    trace.kept = 1;
    return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  for (float& l : logits) l /= p.temperature;

  if (p.top_k > 0 && static_cast<std::size_t>(p.top_k) < vocab) {
    // top-k: the k best, sorted; probabilities over them alone.
    std::vector<Candidate> ranked(vocab);
    for (std::size_t i = 0; i < vocab; ++i) ranked[i] = {logits[i], static_cast<std::int32_t>(i)};
    std::size_t keep = static_cast<std::size_t>(p.top_k);
    std::partial_sort(ranked.begin(), ranked.begin() + static_cast<long>(keep), ranked.end(), before);
    while (keep > 1 && ranked[keep - 1].first == kNegInf) --keep;  // banned tokens are never candidates
    ranked.resize(keep);
    const float max = ranked.front().first;
    std::vector<double> probs(keep);
    double sum = 0;
    for (std::size_t i = 0; i < keep; ++i) sum += probs[i] = std::exp(static_cast<double>(ranked[i].first - max));
    for (double& q : probs) q /= sum;
    if (p.min_p > 0) {  // drop tokens less likely than min_p times the most likely one
      const double floor = p.min_p * probs[0];
      while (keep > 1 && probs[keep - 1] < floor) --keep;
    }
    ranked.resize(keep);
    double mass = 0;
    for (std::size_t i = 0; i < keep; ++i) mass += probs[i];
    return cut_and_draw(ranked, keep, mass, [&](std::size_t i) { return probs[i]; }, p, trace);
  }

  // The whole vocabulary, in weights w = exp(logit - max) (the best token's is 1) rather than
  // probabilities, which saves a division per token: probability = w / (sum of all w). min-p is a
  // floor on w. Only the head of the order that the walks can reach gets ranked: a histogram of
  // the weights by distance below the best logit (quarter-logit bins) tells how far down the mass
  // that the top-p cut and the draw need lies, so a 49k vocabulary costs two linear passes and a
  // sort of its head instead of a full sort.
  constexpr int kBinsPerLogit = 4, kBins = 64 * kBinsPerLogit;  // below 64 logits: weight < 1e-27
  const float max = *std::max_element(logits.begin(), logits.end());
  const double floor = p.min_p;  // min_p times the best token's weight
  std::vector<double> weights(vocab);
  std::vector<std::uint16_t> bins(vocab);
  std::vector<double> bin_weight(kBins, 0.0);
  double sum = 0, kept_weight = 0;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < vocab; ++i) {
    const float below = max - logits[i];
    const double w = std::exp(-static_cast<double>(below));
    weights[i] = w;
    sum += w;
    if (w < floor || logits[i] == kNegInf) continue;  // banned tokens are never candidates
    ++kept;
    kept_weight += w;
    bins[i] = static_cast<std::uint16_t>(std::min<float>(kBins - 1, below * kBinsPerLogit));
    bin_weight[bins[i]] += w;
  }
  // Summation order differs between these passes and the walks by far less than the margin.
  const double need = std::max(p.top_p < 1.0f ? p.top_p * sum : 0.0, sampling_uniform(p.seed, p.step) * kept_weight) +
                      1e-6 * sum;
  int last_bin = 0;
  for (double mass = bin_weight[0]; mass <= need && last_bin < kBins - 1;) mass += bin_weight[++last_bin];
  std::vector<Candidate> ranked;
  for (std::size_t i = 0; i < vocab; ++i) {
    if (weights[i] >= floor && logits[i] != kNegInf && bins[i] <= last_bin) {
      ranked.emplace_back(logits[i], static_cast<std::int32_t>(i));
    }
  }
  std::sort(ranked.begin(), ranked.end(), before);
  auto prob = [&](std::size_t i) { return weights[static_cast<std::size_t>(ranked[i].second)] / sum; };
  return cut_and_draw(ranked, kept, kept_weight / sum, prob, p, trace);
}

}  // namespace

void sample(const SamplingBatch& batch, SampleTrace* traces) {
  TG_CHECK(batch.rows >= 0 && batch.vocab > 0 && batch.logits && batch.params && batch.tokens);
  const bool has_history = batch.history_offsets != nullptr;
  TG_CHECK(!has_history || batch.history_offsets[batch.rows] == 0 ||
           (batch.history_tokens != nullptr && batch.history_counts != nullptr));
  const bool has_bias = batch.bias_offsets != nullptr;
  TG_CHECK(!has_bias || batch.bias_offsets[batch.rows] == 0 ||
           (batch.bias_tokens != nullptr && batch.bias_values != nullptr));
  TG_CHECK(batch.mask_index == nullptr || batch.token_masks != nullptr);
  const auto vocab = static_cast<std::size_t>(batch.vocab);
  const auto words = static_cast<std::size_t>(mask_words(batch.vocab));
  // Row r's entries [begin, end) of a CSR list.
  auto span_of = [&](const std::int32_t* offsets, std::int32_t r) {
    if (!offsets) return std::pair<std::size_t, std::size_t>{0, 0};
    TG_CHECK(offsets[r] >= 0 && offsets[r] <= offsets[r + 1]);
    return std::pair<std::size_t, std::size_t>{static_cast<std::size_t>(offsets[r]), static_cast<std::size_t>(offsets[r + 1])};
  };
  for (std::int32_t r = 0; r < batch.rows; ++r) {
    const SamplingRowParams& p = batch.params[r];
    TG_CHECK(sampling_row_error(p) == nullptr);
    RowExtras x;
    const auto [hb, he] = span_of(batch.history_offsets, r);
    if (he > hb) x = {batch.history_tokens + hb, batch.history_counts + hb, he - hb};
    const auto [bb, be] = span_of(batch.bias_offsets, r);
    if (be > bb) {
      x.bias_tokens = batch.bias_tokens + bb;
      x.bias_values = batch.bias_values + bb;
      x.bias_size = be - bb;
    }
    if (batch.mask_index && batch.mask_index[r] >= 0) x.mask = batch.token_masks + static_cast<std::size_t>(batch.mask_index[r]) * words;
    const float* raw = batch.logits + static_cast<std::size_t>(r) * vocab;
    SampleTrace trace;
    const std::int32_t token = sample_row(raw, vocab, p, x, trace);
    batch.tokens[r] = token;
    if (batch.logprobs) batch.logprobs[r] = raw_logprob(raw, vocab, static_cast<std::size_t>(token));
    if (traces) traces[r] = trace;
  }
}

}  // namespace tiergate::kernels::cpu
