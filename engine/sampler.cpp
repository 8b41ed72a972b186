#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

#include "kernels/check.h"

namespace tiergate::engine {
namespace {

// log-softmax of one entry and of the best few, over the raw logits.
void fill_logprobs(std::span<const float> logits, TokenId chosen, int top, SampledToken& out) {
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - max));
  const float log_z = max + static_cast<float>(std::log(sum));
  out.logprob = logits[static_cast<std::size_t>(chosen)] - log_z;
  if (top <= 0) return;
  std::vector<TokenId> ids(logits.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<TokenId>(i);
  const auto k = std::min<std::size_t>(static_cast<std::size_t>(top), ids.size());
  std::partial_sort(ids.begin(), ids.begin() + static_cast<long>(k), ids.end(), [&](TokenId a, TokenId b) {
    return logits[static_cast<std::size_t>(a)] > logits[static_cast<std::size_t>(b)];
  });
  for (std::size_t i = 0; i < k; ++i) out.top.emplace_back(ids[i], logits[static_cast<std::size_t>(ids[i])] - log_z);
}

}  // namespace

Sampler::Sampler(const SamplingParams& params, std::uint64_t seed) : params_(params), rng_(seed) {}

void Sampler::accept(TokenId token) { ++output_counts_[token]; }

SampledToken Sampler::sample(std::span<float> logits, std::span<const TokenId> prompt) {
  SampledToken out;
  const bool want_logprobs = params_.logprobs || params_.top_logprobs > 0;
  std::vector<float> raw;
  if (want_logprobs) raw.assign(logits.begin(), logits.end());

  // Penalties. Repetition (HF / llama.cpp form): over prompt and output, divide positive logits.
  if (params_.repetition_penalty != 1.0f) {
    std::unordered_set<TokenId> seen(prompt.begin(), prompt.end());
    for (const auto& [t, c] : output_counts_) seen.insert(t);
    for (TokenId t : seen) {
      float& l = logits[static_cast<std::size_t>(t)];
      l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
    }
  }
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    for (const auto& [t, c] : output_counts_) {
      logits[static_cast<std::size_t>(t)] -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(c);
    }
  }

  if (params_.temperature == 0.0f) {
    out.token = static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  } else {
    candidates_.clear();
    for (std::size_t i = 0; i < logits.size(); ++i) candidates_.emplace_back(logits[i] / params_.temperature, static_cast<TokenId>(i));
    auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    std::size_t keep = candidates_.size();
    if (params_.top_k > 0 && static_cast<std::size_t>(params_.top_k) < keep) {
      keep = static_cast<std::size_t>(params_.top_k);
      std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<long>(keep), candidates_.end(), by_logit);
    } else {
      std::sort(candidates_.begin(), candidates_.end(), by_logit);
    }
    candidates_.resize(keep);
    // Probabilities of the survivors.
    const float max = candidates_.front().first;
    std::vector<double> probs(keep);
    double sum = 0;
    for (std::size_t i = 0; i < keep; ++i) sum += probs[i] = std::exp(static_cast<double>(candidates_[i].first - max));
    for (double& p : probs) p /= sum;
    // min-p: drop tokens less likely than min_p times the most likely one.
    if (params_.min_p > 0) {
      const double floor = params_.min_p * probs[0];
      while (keep > 1 && probs[keep - 1] < floor) --keep;
    }
    // top-p: the smallest prefix whose mass reaches top_p.
    if (params_.top_p < 1.0f) {
      double mass = 0;
      std::size_t i = 0;
      for (; i < keep; ++i) {
        mass += probs[i];
        if (mass >= params_.top_p) break;
      }
      keep = std::min(keep, i + 1);
    }
    double total = 0;
    for (std::size_t i = 0; i < keep; ++i) total += probs[i];
    const double draw = std::uniform_real_distribution<double>(0.0, total)(rng_);
    double acc = 0;
    out.token = candidates_[keep - 1].second;
    for (std::size_t i = 0; i < keep; ++i) {
      acc += probs[i];
      if (draw < acc) {
        out.token = candidates_[i].second;
        break;
      }
    }
  }
  if (want_logprobs) fill_logprobs(raw, out.token, params_.top_logprobs, out);
  return out;
}

}  // namespace tiergate::engine
