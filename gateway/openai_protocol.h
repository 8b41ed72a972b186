// The OpenAI and LMDeploy-QoS request and response bodies: parsing a JSON body (simdjson) into a
// generation request with every problem reported as an OpenAI-shaped error naming the parameter,
// and building the JSON of responses and SSE chunks. Pure functions; no transport.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/chat_template.h"
#include "engine/engine.h"
#include "engine/grammar_spec.h"
#include "engine/sampling_params.h"
#include "engine/tool_calls.h"

namespace tiergate::gateway {

// kInteractive: LMDeploy's /v1/chat/interactive_qos (a prompt string, a session kept server-side).
enum class Endpoint { kChat, kCompletion, kInteractive };

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty when no single parameter is at fault
  std::string code;

  // {"error": {"message", "type", "param", "code"}}, always valid UTF-8: the fields may quote
  // unvalidated client bytes (a path), which come out repaired (each ill-formed byte as U+FFFD).
  std::string to_json() const;
};

struct GenerationRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::string model;
  std::vector<engine::ChatMessage> messages;  // chat
  std::string prompt;                         // completion
  engine::SamplingParams params;
  bool stream = false;
  bool include_usage = false;
  std::string user;  // "user" (OpenAI) or "user_id" (LMDeploy-QoS); may be empty
  bool max_tokens_given = false;
  std::int64_t session_id = -1;  // kInteractive: -1 = no session
  bool interactive_mode = false; // kInteractive: keep the turn in the session's history
  bool end_session = false;      // kInteractive: `stop: true`, end the session and generate nothing
  bool echo = false;             // kCompletion: the prompt comes first in the output
  // Output constraint (response_format, guided_*); tool_choice's comes from the tools at render time.
  std::optional<engine::GrammarSpec> grammar;
  std::vector<engine::ToolDefinition> tools;  // kChat
  engine::ToolChoice tool_choice;
  bool parallel_tool_calls = true;
};

// qos_route: the LMDeploy *_qos body (user_id, request_output_len, messages as a string, stop: false).
std::variant<GenerationRequest, ApiError> parse_generation(std::string_view body, Endpoint endpoint, bool qos_route);

// What a finished choice looked like, for the non-streaming body.
struct ChoiceResult {
  std::string text;  // completions with echo: the prompt first; chat with tool calls: the content around them
  // When asked for; with echo the prompt's tokens come first (the very first without a logprob: NaN).
  std::vector<engine::SampledToken> logprobs;
  std::string finish_reason;
  std::vector<engine::ToolCall> tool_calls;  // chat: the calls parsed from the answer ("tool_calls" finish)
};

// One streamed delta of a choice.
struct ChoiceDelta {
  std::string text;
  std::vector<engine::SampledToken> logprobs;  // the delta's tokens, when asked for
  std::string tool_calls;                      // chat: the delta's "tool_calls" list as JSON; "" when none
};

std::string completion_body(const GenerationRequest& req, const std::string& id, long created,
                            const std::vector<ChoiceResult>& choices, std::size_t prompt_tokens,
                            std::size_t completion_tokens, const engine::Tokenizer& tokenizer);

// One SSE event ("data: {...}\n\n") carrying a delta of one choice; finish_reason may be empty.
// `text_offset`: the choice's legacy logprobs offset so far (completions), advanced past the delta.
std::string stream_chunk(const GenerationRequest& req, const std::string& id, long created, int index,
                         const ChoiceDelta& delta, bool first, const std::string& finish_reason,
                         const engine::Tokenizer& tokenizer, std::size_t& text_offset);

// A choice's tool calls as OpenAI's message.tool_calls list.
std::string tool_calls_json(const std::vector<engine::ToolCall>& calls);
// LMDeploy's interactive answers: one JSON object, or (streaming) one JSON object per line.
std::string interactive_body(const std::string& text, std::size_t tokens, std::size_t input_tokens,
                             std::size_t history_tokens, const std::string& finish_reason);
std::string interactive_chunk(const std::string& text, std::size_t tokens, const std::string& finish_reason);

// The usage-only chunk of stream_options.include_usage.
std::string stream_usage_chunk(const GenerationRequest& req, const std::string& id, long created,
                               std::size_t prompt_tokens, std::size_t completion_tokens);

}  // namespace tiergate::gateway
