#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

#include "kernels/check.h"

namespace tiergate::engine {
namespace {

bool wants_logprobs(const SamplingParams& p) { return p.logprobs || p.top_logprobs > 0; }

}  // namespace

namespace {

float log_partition(std::span<const float> logits) {
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - max));
  return max + static_cast<float>(std::log(sum));
}

}  // namespace

float token_logprob(std::span<const float> logits, TokenId token) {
  TG_CHECK(token >= 0 && static_cast<std::size_t>(token) < logits.size());
  return logits[static_cast<std::size_t>(token)] - log_partition(logits);
}

std::vector<std::pair<TokenId, float>> top_logprobs(std::span<const float> logits, std::size_t k) {
  if (logits.empty() || k == 0) return {};
  const float log_z = log_partition(logits);
  std::vector<TokenId> ids(logits.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<TokenId>(i);
  k = std::min(k, ids.size());
  std::partial_sort(ids.begin(), ids.begin() + static_cast<long>(k), ids.end(), [&](TokenId a, TokenId b) {
    const float la = logits[static_cast<std::size_t>(a)], lb = logits[static_cast<std::size_t>(b)];
    return la > lb || (la == lb && a < b);
  });
  std::vector<std::pair<TokenId, float>> top;
  for (std::size_t i = 0; i < k; ++i) top.emplace_back(ids[i], logits[static_cast<std::size_t>(ids[i])] - log_z);
  return top;
}

Sampler::Sampler(const SamplingParams& params, std::uint64_t seed, std::span<const TokenId> prompt)
    : params_(params), seed_(seed) {
  // Only the repetition penalty reads the prompt; presence and frequency read the output alone.
  if (params_.repetition_penalty == 1.0f) return;
  for (TokenId t : prompt) {
    if (history_index_.emplace(t, history_.size()).second) history_.emplace_back(t, 0);
  }
}

bool Sampler::accept(TokenId token) {
  ++generated_;
  bool over = false;
  if (params_.grammar) {
    grammar_state_ = params_.grammar->next(grammar_state_, token);
    over = grammar_state_ < 0 || params_.grammar->complete(grammar_state_);
  }
  const bool penalised = params_.repetition_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                         params_.frequency_penalty != 0.0f;
  if (!penalised) return over;
  const auto [it, fresh] = history_index_.emplace(token, history_.size());
  if (fresh) history_.emplace_back(token, 0);
  ++history_[it->second].second;
  return over;
}

void Sampler::add_draw(SamplingStep& step, std::int32_t logit_row) const {
  kernels::SamplingRowParams row;
  row.temperature = params_.temperature;
  row.top_k = params_.top_k;
  row.top_p = params_.top_p;
  row.min_p = params_.min_p;
  row.repetition_penalty = params_.repetition_penalty;
  row.presence_penalty = params_.presence_penalty;
  row.frequency_penalty = params_.frequency_penalty;
  row.seed = seed_;
  row.step = generated_;
  TG_CHECK(kernels::sampling_row_error(row) == nullptr);  // validate() admitted the request
  step.logit_rows.push_back(logit_row);
  step.params.push_back(row);
  for (const auto& [token, count] : history_) {
    step.history_tokens.push_back(token);
    step.history_counts.push_back(count);
  }
  step.history_offsets.push_back(static_cast<std::int32_t>(step.history_tokens.size()));
  for (const auto& [token, bias] : params_.logit_bias) {
    step.bias_tokens.push_back(token);
    step.bias_values.push_back(bias);
  }
  step.bias_offsets.push_back(static_cast<std::int32_t>(step.bias_tokens.size()));
  if (!params_.grammar || grammar_state_ < 0) {
    step.mask_index.push_back(-1);
  } else {
    const std::vector<std::uint32_t>& mask = params_.grammar->mask(grammar_state_);
    const std::size_t at = step.token_masks.size();
    step.mask_index.push_back(static_cast<std::int32_t>(at / mask.size()));
    step.token_masks.insert(step.token_masks.end(), mask.begin(), mask.end());
    if (params_.ignore_eos) {  // go on past where the match could end, unless nothing else is allowed
      const auto& ends = params_.grammar->vocabulary().end_tokens();
      std::size_t allowed = 0, ending = 0;
      for (std::uint32_t w : mask) allowed += static_cast<std::size_t>(__builtin_popcount(w));
      for (TokenId t : ends) ending += kernels::mask_allows(mask.data(), t);
      if (allowed > ending) {
        for (TokenId t : ends) step.token_masks[at + static_cast<std::size_t>(t) / 32] &= ~(1u << (t % 32));
      }
    }
  }
  step.want_logprobs |= wants_logprobs(params_);
  step.want_logits |= params_.top_logprobs > 0;
}

SampledToken Sampler::result(const SamplingStep& step, const SampledStep& out, std::size_t draw,
                             std::size_t vocab) const {
  SampledToken t;
  t.token = out.tokens[draw];
  if (!wants_logprobs(params_)) return t;
  t.logprob = out.logprobs[draw];
  if (params_.top_logprobs > 0) {
    const auto row = static_cast<std::size_t>(step.logit_rows[draw]);
    TG_CHECK((row + 1) * vocab <= out.logits.size());
    t.top = top_logprobs(std::span<const float>(out.logits).subspan(row * vocab, vocab),
                         static_cast<std::size_t>(params_.top_logprobs));
  }
  return t;
}

SampledToken Sampler::sample(std::span<const float> logits) const {
  SamplingStep step;
  add_draw(step, 0);
  SampledStep out;
  sample_on_host(logits, logits.size(), step, out);
  if (step.want_logits) out.logits.assign(logits.begin(), logits.end());
  return result(step, out, 0, logits.size());
}

}  // namespace tiergate::engine
