// Tool (function) calling for chat templates that define it: the tools a request offers, which
// call it requires, the wire format of calls in the model's text (ToolCallFormat, from the chat
// template), the grammar that enforces a required or named call (constrained decoding), and the
// parser that turns generated text back into OpenAI tool calls, all at once or streaming.
// Value types and pure functions, except ToolCallStream (one per choice; not thread-safe).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/grammar_spec.h"

namespace tiergate::engine {

struct ToolDefinition {
  std::string name;
  std::string description;
  std::string parameters;  // JSON schema of the arguments, minified; empty: any JSON object
  std::string json;        // the whole tool as the client sent it, minified (rendered into the prompt)
};

struct ToolChoice {
  enum class Mode { kNone, kAuto, kRequired, kNamed };
  Mode mode = Mode::kAuto;
  std::string name;  // kNamed
};

// How calls are written in a template family's text. Hermes (Qwen2.5, Hermes 2/3): each call is
// `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`.
struct ToolCallFormat {
  std::string open;           // before each call's JSON object
  std::string close;          // after it
  std::string separator;      // between calls
  std::string arguments_key;  // "arguments"
};
ToolCallFormat hermes_tool_call_format();

struct ToolCall {
  std::string id;         // call_<n>, unique within the response
  std::string name;
  std::string arguments;  // JSON text of the arguments object, as generated
};

// The grammar of what tool_choice requires: one call (or, with `parallel`, one or more) of one of
// `tools` (`choice` kRequired) or of the named one (kNamed), each call's arguments following its
// function's parameter schema. nullopt for kNone and kAuto (the text is free).
std::optional<GrammarSpec> tool_call_grammar(const ToolCallFormat& format, const std::vector<ToolDefinition>& tools,
                                             const ToolChoice& choice, bool parallel);

// The calls in a finished answer, and the text around them (content); a malformed call stays in
// the content. `id_prefix` names the calls (id_prefix + index).
struct ParsedToolCalls {
  std::string content;
  std::vector<ToolCall> calls;
};
ParsedToolCalls parse_tool_calls(const ToolCallFormat& format, std::string_view text, const std::string& id_prefix);

}  // namespace tiergate::engine
