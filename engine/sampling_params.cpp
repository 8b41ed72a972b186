#include "engine/sampling_params.h"

#include <cmath>

namespace tiergate::engine {

std::optional<ParamError> validate(const SamplingParams& p, std::size_t prompt_tokens, std::size_t context_length) {
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
  return std::nullopt;
}

}  // namespace tiergate::engine
