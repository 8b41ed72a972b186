#include "engine/sampling_params.h"

#include <cmath>
#include <unordered_set>

namespace tiergate::engine {

std::optional<ParamError> validate(const SamplingParams& p, std::size_t prompt_tokens, std::size_t context_length,
                                   std::size_t vocab_size) {
  auto bad = [](const char* param, std::string message) { return ParamError{param, std::move(message)}; };
  if (p.max_tokens < 1) return bad("max_tokens", "must be at least 1");
  if (prompt_tokens == 0) return bad("prompt", "the prompt is empty");
  if (prompt_tokens >= context_length) {
    return bad("prompt", "the prompt has " + std::to_string(prompt_tokens) + " tokens; the model's context is " +
                             std::to_string(context_length));
  }
  if (prompt_tokens + static_cast<std::size_t>(p.max_tokens) > context_length) {
    return bad("max_tokens", "prompt (" + std::to_string(prompt_tokens) + " tokens) + max_tokens (" +
                                 std::to_string(p.max_tokens) + ") exceeds the model's context of " +
                                 std::to_string(context_length));
  }
  if (!std::isfinite(p.temperature) || p.temperature < 0 || p.temperature > 2) {
    return bad("temperature", "must be between 0 and 2");
  }
  if (!std::isfinite(p.top_p) || p.top_p <= 0 || p.top_p > 1) return bad("top_p", "must be in (0, 1]");
  if (p.top_k < -1) return bad("top_k", "must be -1 (disabled), 0 (disabled) or positive");
  if (!std::isfinite(p.min_p) || p.min_p < 0 || p.min_p > 1) return bad("min_p", "must be in [0, 1]");
  if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0 || p.repetition_penalty > 10) {
    return bad("repetition_penalty", "must be in (0, 10]");
  }
  if (!std::isfinite(p.presence_penalty) || std::fabs(p.presence_penalty) > 2) {
    return bad("presence_penalty", "must be between -2 and 2");
  }
  if (!std::isfinite(p.frequency_penalty) || std::fabs(p.frequency_penalty) > 2) {
    return bad("frequency_penalty", "must be between -2 and 2");
  }
  if (p.n < 1 || p.n > 16) return bad("n", "must be between 1 and 16");
  if (p.top_logprobs < 0 || p.top_logprobs > 20) return bad("top_logprobs", "must be between 0 and 20");
  if (p.stop.size() > 16) return bad("stop", "at most 16 stop sequences");
  for (const std::string& s : p.stop) {
    if (s.empty()) return bad("stop", "stop sequences must not be empty");
  }
  if (p.logit_bias.size() > kMaxLogitBias) {
    return bad("logit_bias", "at most " + std::to_string(kMaxLogitBias) + " entries");
  }
  std::unordered_set<std::int32_t> biased;
  for (const auto& [token, bias] : p.logit_bias) {
    if (token < 0 || (vocab_size > 0 && static_cast<std::size_t>(token) >= vocab_size)) {
      return bad("logit_bias", "token id " + std::to_string(token) + " is not in the vocabulary (0.." +
                                   std::to_string(vocab_size == 0 ? 0 : vocab_size - 1) + ")");
    }
    if (!std::isfinite(bias) || bias < -100 || bias > 100) {
      return bad("logit_bias", "the bias of token " + std::to_string(token) + " must be between -100 and 100");
    }
    if (!biased.insert(token).second) return bad("logit_bias", "token id " + std::to_string(token) + " appears twice");
  }
  return std::nullopt;
}

}  // namespace tiergate::engine
