// The logprobs of a choice in OpenAI's two shapes: chat's `{"content": [{token, logprob, bytes,
// top_logprobs}]}` and legacy completions' `{"tokens", "token_logprobs", "top_logprobs",
// "text_offset"}`. A token whose logprob is NaN has none (the first token of an echoed prompt):
// null in the legacy shape. Token text is always well-formed UTF-8 (a token holding part of a
// character shows U+FFFD; chat's `bytes` has the exact bytes). Pure functions.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "engine/sampler.h"
#include "engine/tokenizer.h"

namespace tiergate::gateway {

std::string chat_logprobs_json(std::span<const engine::SampledToken> tokens, const engine::Tokenizer& tokenizer);

// `text_offset`: the character offset of the first token in the choice's text; advanced past the
// tokens (a stream continues it from chunk to chunk).
std::string completion_logprobs_json(std::span<const engine::SampledToken> tokens, const engine::Tokenizer& tokenizer,
                                     std::size_t& text_offset);

}  // namespace tiergate::gateway
