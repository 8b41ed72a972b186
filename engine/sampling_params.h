// What a request asks of generation (the OpenAI / vLLM sampling parameters) and their validation.
// validate() returns the first bad field and why, for the gateway's 400 response; the engine only
// ever sees valid parameters. Plain value type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tiergate::engine {

struct SamplingParams {
  std::int64_t max_tokens = 16;
  float temperature = 1.0f;  // 0 = greedy
  float top_p = 1.0f;
  std::int32_t top_k = 0;    // 0 or -1 = disabled
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;  // >1 discourages tokens already in prompt or output
  float presence_penalty = 0.0f;    // OpenAI: -2..2, over generated tokens
  float frequency_penalty = 0.0f;   // OpenAI: -2..2, over generated tokens
  std::optional<std::uint64_t> seed;
  std::vector<std::string> stop;    // never emitted; matched across token boundaries
  bool ignore_eos = false;
  std::int32_t n = 1;
  bool logprobs = false;
  std::int32_t top_logprobs = 0;    // 0..20
};

struct ParamError {
  std::string param;    // the request field, e.g. "temperature"
  std::string message;
};

// nullopt when valid. `context_length` bounds prompt + max_tokens.
std::optional<ParamError> validate(const SamplingParams& params, std::size_t prompt_tokens,
                                   std::size_t context_length);

}  // namespace tiergate::engine
