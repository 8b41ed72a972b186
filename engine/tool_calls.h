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

// Tool calls out of generated text as it streams: push() each piece of text, finish() at the end.
// Text outside calls comes out as content as soon as it cannot be the start of a call; a call
// comes out as a start (its name, once known) and then its arguments' JSON in fragments, as
// OpenAI streams them. A call that breaks the format is given back as content (whatever of it was
// not streamed yet) and ends the parsing: the rest is content.
class ToolCallStream {
 public:
  struct Event {
    // kCallBroken: the call last started breaks the format; its text follows as content.
    enum class Kind { kContent, kCallStart, kArguments, kCallBroken };
    Kind kind;
    int index = 0;     // kCallStart, kArguments, kCallBroken: which call
    std::string text;  // kContent: content; kCallStart: the name; kArguments: a fragment
  };

  explicit ToolCallStream(ToolCallFormat format) : format_(std::move(format)) {}
  std::vector<Event> push(std::string_view text);
  std::vector<Event> finish();
  int calls() const { return complete_; }  // calls parsed whole so far

 private:
  enum class State { kText, kHeader, kArguments, kTail, kBroken };
  void step(std::vector<Event>& out, bool at_end);
  void give_back(std::vector<Event>& out);

  ToolCallFormat format_;
  State state_ = State::kText;
  std::string pending_;    // text not yet consumed
  std::string call_text_;  // the current call's text so far (given back if it breaks)
  std::size_t streamed_ = 0;  // of its arguments, bytes already sent
  int depth_ = 0;             // arguments: JSON nesting depth
  bool in_string_ = false, escaped_ = false;
  int index_ = -1, complete_ = 0;
};

// The calls in a finished answer, and the text around them (content); a malformed call stays in
// the content. `id_prefix` names the calls (id_prefix + index).
struct ParsedToolCalls {
  std::string content;
  std::vector<ToolCall> calls;
};
ParsedToolCalls parse_tool_calls(const ToolCallFormat& format, std::string_view text, const std::string& id_prefix);

}  // namespace tiergate::engine
