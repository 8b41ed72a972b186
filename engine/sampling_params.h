// What a request asks of generation (the OpenAI / vLLM sampling parameters) and their validation.
// validate() returns the first bad field and why, for the gateway's 400 response; the engine only
// ever sees valid parameters. Plain value type.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tiergate::engine {

class Grammar;  // engine/grammar.h

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
  // OpenAI logit_bias: (token id, bias in [-100, 100]) added to the raw logit before penalties;
  // token ids distinct.
  std::vector<std::pair<std::int32_t, float>> logit_bias;
  bool skip_special_tokens = true;  // false: control tokens are written into the text
  bool prompt_logprobs = false;     // echo with logprobs: the prompt tokens' logprobs (and top_logprobs)
  // Constrained decoding: every token is one the grammar allows (engine/grammar.h); null = free.
  std::shared_ptr<const Grammar> grammar;
};

inline constexpr std::size_t kMaxLogitBias = 1024;

struct ParamError {
  std::string param;    // the request field, e.g. "temperature"
  std::string message;
};

// nullopt when valid. `context_length` bounds prompt + max_tokens; `vocab_size` (0: unchecked)
// bounds logit_bias's token ids.
std::optional<ParamError> validate(const SamplingParams& params, std::size_t prompt_tokens,
                                   std::size_t context_length, std::size_t vocab_size = 0);

}  // namespace tiergate::engine
