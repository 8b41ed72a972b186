// One choice's answer as the client sees it, built from the engine's deltas: the echoed prompt
// first (completions with echo), the logprobs with their tokens (the echoed prompt's first), and,
// for a chat offering tools, the tool calls parsed out of the text (engine/tool_calls.h), streamed
// as OpenAI streams them: a first delta with the call's index, id, type and name, then fragments of
// its arguments. push() gives the delta to stream; result() holds the whole answer. One per choice;
// not thread-safe (the engine thread delivers a request's outputs in order).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/tool_calls.h"
#include "gateway/openai_protocol.h"

namespace tiergate::gateway {

class ChoiceOutput {
 public:
  // echo: text to put first (empty: none). tools: the template's call format when the request offers
  // tools. call_id_prefix + index names each call.
  ChoiceOutput(std::string echo, std::optional<engine::ToolCallFormat> tools, std::string call_id_prefix);

  // One engine output; `prompt_logprobs` (echo with logprobs) go first on the choice's first push.
  ChoiceDelta push(const engine::RequestOutput& output, const std::vector<engine::SampledToken>& prompt_logprobs);
  // At the choice's end (after its last push): what the parser held back; `finish_reason` becomes
  // "tool_calls" when the model stopped after calling tools.
  ChoiceDelta finish(std::string& finish_reason);

  const ChoiceResult& result() const { return result_; }
  std::size_t& text_offset() { return text_offset_; }  // legacy logprobs' offset while streaming

 private:
  void take(std::vector<engine::ToolCallStream::Event> events, ChoiceDelta& delta);

  std::string echo_;
  std::optional<engine::ToolCallStream> parser_;
  std::string call_id_prefix_;
  bool first_ = true;
  std::size_t text_offset_ = 0;
  ChoiceResult result_;
};

}  // namespace tiergate::gateway
