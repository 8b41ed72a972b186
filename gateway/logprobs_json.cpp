#include "gateway/logprobs_json.h"

#include <cmath>

#include "engine/unicode.h"
#include "qos/config_writer.h"

namespace tiergate::gateway {
namespace {

using qos::json_number;
using qos::json_string;

std::string token_text(const engine::Tokenizer& tok, engine::TokenId token) {
  return json_string(engine::to_valid_utf8(tok.token_bytes(token, true)));
}

std::string token_bytes_json(const engine::Tokenizer& tok, engine::TokenId token) {
  std::string out = "[";
  const std::string bytes = tok.token_bytes(token, true);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    out += (i ? ", " : "") + std::to_string(static_cast<unsigned char>(bytes[i]));
  }
  return out + "]";
}

// Characters `bytes` adds to a text: its bytes that do not continue a UTF-8 sequence.
std::size_t characters(const std::string& bytes) {
  std::size_t n = 0;
  for (char c : bytes) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

}  // namespace

std::string chat_logprobs_json(std::span<const engine::SampledToken> tokens, const engine::Tokenizer& tok) {
  std::string out = "{\"content\": [";
  for (std::size_t k = 0; k < tokens.size(); ++k) {
    const engine::SampledToken& t = tokens[k];
    out += (k ? ", " : "") + std::string("{\"token\": ") + token_text(tok, t.token) +
           ", \"logprob\": " + json_number(t.logprob) + ", \"bytes\": " + token_bytes_json(tok, t.token) +
           ", \"top_logprobs\": [";
    for (std::size_t i = 0; i < t.top.size(); ++i) {
      out += (i ? ", " : "") + std::string("{\"token\": ") + token_text(tok, t.top[i].first) +
             ", \"logprob\": " + json_number(t.top[i].second) + ", \"bytes\": " + token_bytes_json(tok, t.top[i].first) +
             "}";
    }
    out += "]}";
  }
  return out + "]}";
}

std::string completion_logprobs_json(std::span<const engine::SampledToken> tokens, const engine::Tokenizer& tok,
                                     std::size_t& text_offset) {
  std::string names, values, tops, offsets;
  for (std::size_t k = 0; k < tokens.size(); ++k) {
    const engine::SampledToken& t = tokens[k];
    const std::string sep = k ? ", " : "";
    names += sep + token_text(tok, t.token);
    const bool scored = !std::isnan(t.logprob);
    values += sep + (scored ? json_number(t.logprob) : std::string("null"));
    if (!scored) {
      tops += sep + "null";
    } else {
      tops += sep + "{";
      for (std::size_t i = 0; i < t.top.size(); ++i) {
        tops += (i ? ", " : "") + token_text(tok, t.top[i].first) + ": " + json_number(t.top[i].second);
      }
      tops += "}";
    }
    offsets += sep + std::to_string(text_offset);
    text_offset += characters(tok.token_bytes(t.token));  // as the text holds it
  }
  return "{\"tokens\": [" + names + "], \"token_logprobs\": [" + values + "], \"top_logprobs\": [" + tops +
         "], \"text_offset\": [" + offsets + "]}";
}

}  // namespace tiergate::gateway
