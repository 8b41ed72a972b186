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

std::int32_t sample_row(const float* raw, std::size_t vocab, const SamplingRowParams& p, const std::int32_t* hist_tokens,
                        const std::int32_t* hist_counts, std::size_t hist_size, SampleTrace& trace) {
  std::vector<float> logits(raw, raw + vocab);
  std::vector<char> seen(hist_size > 0 ? vocab : 0, 0);
  for (std::size_t e = 0; e < hist_size; ++e) {
    const std::int32_t t = hist_tokens[e];
    TG_CHECK(t >= 0 && static_cast<std::size_t>(t) < vocab);
    TG_CHECK(!seen[static_cast<std::size_t>(t)]);  // tokens of a row must be distinct
    seen[static_cast<std::size_t>(t)] = 1;
    logits[static_cast<std::size_t>(t)] = apply_penalties(raw[t], hist_counts[e], p);
  }

  if (p.temperature == 0.0f) {
    trace.greedy = true;
    trace.kept = 1;
    return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }

  std::vector<std::pair<float, std::int32_t>> candidates(vocab);
  for (std::size_t i = 0; i < vocab; ++i) candidates[i] = {logits[i] / p.temperature, static_cast<std::int32_t>(i)};
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  std::size_t keep = vocab;
  if (p.top_k > 0 && static_cast<std::size_t>(p.top_k) < keep) {
    keep = static_cast<std::size_t>(p.top_k);
    std::partial_sort(candidates.begin(), candidates.begin() + static_cast<long>(keep), candidates.end(), by_logit);
  } else {
    std::sort(candidates.begin(), candidates.end(), by_logit);
  }
  const float max = candidates.front().first;
  std::vector<double> probs(keep);
  double sum = 0;
  for (std::size_t i = 0; i < keep; ++i) sum += probs[i] = std::exp(static_cast<double>(candidates[i].first - max));
  for (double& q : probs) q /= sum;
  if (p.min_p > 0) {
    const double floor = p.min_p * probs[0];
    while (keep > 1 && probs[keep - 1] < floor) --keep;
  }
  if (p.top_p < 1.0f) {
    double mass = 0;
    std::size_t i = 0;
    for (; i < keep; ++i) {
      mass += probs[i];
      trace.top_p_margin = std::min(trace.top_p_margin, std::fabs(mass - static_cast<double>(p.top_p)));
      if (mass >= p.top_p) break;
    }
    keep = std::min(keep, i + 1);
  }
  double total = 0;
  for (std::size_t i = 0; i < keep; ++i) total += probs[i];
  const double draw = sampling_uniform(p.seed, p.step) * total;
  trace.kept = static_cast<std::int32_t>(keep);
  trace.kept_mass = total;
  trace.draw = draw;
  double acc = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    const double before = acc;
    acc += probs[i];
    if (draw < acc) {
      trace.draw_margin = std::min(draw - before, acc - draw);
      return candidates[i].second;
    }
  }
  trace.draw_margin = 0;
  return candidates[keep - 1].second;
}

}  // namespace

void sample(const SamplingBatch& batch, SampleTrace* traces) {
  TG_CHECK(batch.rows >= 0 && batch.vocab > 0 && batch.logits && batch.params && batch.tokens);
  const bool has_history = batch.history_offsets != nullptr;
  TG_CHECK(!has_history || batch.history_offsets[batch.rows] == 0 ||
           (batch.history_tokens != nullptr && batch.history_counts != nullptr));
  const auto vocab = static_cast<std::size_t>(batch.vocab);
  for (std::int32_t r = 0; r < batch.rows; ++r) {
    const SamplingRowParams& p = batch.params[r];
    TG_CHECK(sampling_row_error(p) == nullptr);
    std::size_t begin = 0, end = 0;
    if (has_history) {
      TG_CHECK(batch.history_offsets[r] >= 0 && batch.history_offsets[r] <= batch.history_offsets[r + 1]);
      begin = static_cast<std::size_t>(batch.history_offsets[r]);
      end = static_cast<std::size_t>(batch.history_offsets[r + 1]);
    }
    const float* raw = batch.logits + static_cast<std::size_t>(r) * vocab;
    SampleTrace trace;
    const std::int32_t token = sample_row(raw, vocab, p, has_history ? batch.history_tokens + begin : nullptr,
                                          has_history ? batch.history_counts + begin : nullptr, end - begin, trace);
    batch.tokens[r] = token;
    if (batch.logprobs) batch.logprobs[r] = raw_logprob(raw, vocab, static_cast<std::size_t>(token));
    if (traces) traces[r] = trace;
  }
}

}  // namespace tiergate::kernels::cpu
