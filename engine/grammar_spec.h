// What a request constrains its output to: the text form of response_format (json_object,
// json_schema), vLLM's guided_json / guided_regex / guided_choice, or the tool calls that
// tool_choice requires. A plain value; engine/grammar.h compiles it (GrammarCache keys on it).
#pragma once

#include <string>

namespace tiergate::engine {

struct GrammarSpec {
  enum class Kind {
    kJsonValue,   // any JSON object (json_object); `source` empty
    kJsonSchema,  // `source`: the schema, minified JSON
    kRegex,       // `source`: the pattern; the whole output matches it
    kChoice,      // `source`: a JSON list of strings; the output is one of them
    kToolCalls,   // `source`: engine/tool_calls.h's description of the calls allowed
  };
  Kind kind = Kind::kJsonValue;
  std::string source;
  bool strict = false;  // kJsonSchema: OpenAI's strict mode (every object closed, every property required)
  std::string param;    // the request field it came from, for error messages

  std::string cache_key() const {
    return std::to_string(static_cast<int>(kind)) + (strict ? "s:" : ":") + source;
  }
};

}  // namespace tiergate::engine
