#include "gateway/request_fields.h"

#include <simdjson.h>

#include <array>

namespace tiergate::gateway {
namespace {

constexpr unsigned kChats = kRouteChat | kRouteChatQos;
constexpr unsigned kCompletions = kRouteCompletion | kRouteCompletionQos;
constexpr unsigned kStateless = kChats | kCompletions;
constexpr unsigned kQos = kRouteChatQos | kRouteCompletionQos | kRouteInteractive;
constexpr unsigned kAll = kStateless | kRouteInteractive;

using S = FieldStatus;

// OpenAI's chat and legacy completions request fields, vLLM's and LMDeploy's extensions that this
// server speaks, and LMDeploy 0.5.3's *_qos bodies (ChatCompletionRequestQos,
// CompletionRequestQos, GenerateRequestQos) plus what LMDeploy's own client sends with them.
// Rows are in the README's order. `$MODEL` in an example stands for the served model's name.
constexpr RequestField kFields[] = {
    // What to continue.
    {"messages", kChats, S::kImplemented, "", R"({"messages": [{"role": "user", "content": "Hi"}]})",
     "`{role, content}` list: content a string or text parts; roles system, developer (as system), user, assistant "
     "(with `tool_calls`), tool; chat_qos also takes a bare string"},
    {"prompt", kCompletions, S::kImplemented, "", R"({"prompt": "Hi"})", "a string, or a list holding one string"},
    {"prompt", kRouteInteractive, S::kImplemented, "", R"({"prompt": "Hi"})",
     "this turn's user message; the session's history goes before it"},
    {"model", kStateless, S::kImplemented, "", R"({"model": "$MODEL"})",
     "must name the served model (404 otherwise); may be omitted"},
    // How much.
    {"max_tokens", kStateless, S::kImplemented, "", R"({"max_tokens": 3})",
     "at least 1; default: what the context leaves, at most 512 (completions_qos: 16, as LMDeploy)"},
    {"max_completion_tokens", kStateless, S::kImplemented, "", R"({"max_completion_tokens": 3})",
     "OpenAI's newer name for max_tokens"},
    {"request_output_len", kQos, S::kImplemented, "", R"({"request_output_len": 3})",
     "LMDeploy's max_tokens (interactive_qos default 512)"},
    {"n", kStateless, S::kImplemented, "", R"({"n": 2})", "1 to 16 choices, sharing the prompt's KV blocks"},
    {"stop", kStateless, S::kImplemented, "", R"({"stop": ["\n\n"]})",
     "a string or a list of up to 16, never part of the output; `false` (LMDeploy's default) is none, `true` is "
     "refused here (it ends a session on interactive_qos)"},
    {"stop", kRouteInteractive, S::kImplemented, "", R"({"stop": true})",
     "`true` ends the session: its history is dropped and nothing is generated (LMDeploy); strings as elsewhere"},
    {"ignore_eos", kAll, S::kImplemented, "", R"({"ignore_eos": true})",
     "generation goes on past end-of-turn tokens until max_tokens or a stop string"},
    // Sampling.
    {"temperature", kAll, S::kImplemented, "", R"({"temperature": 0.5})",
     "0 to 2, 0 greedy; default 1 (chat_qos and completions_qos 0.7, interactive_qos 0.8, as LMDeploy)"},
    {"top_p", kAll, S::kImplemented, "", R"({"top_p": 0.9})", "(0, 1]; default 1 (interactive_qos 0.8)"},
    {"top_k", kAll, S::kImplemented, "", R"({"top_k": 20})",
     "vLLM/LMDeploy extension; 0 or -1 is off, the default (40 on the *_qos routes, as LMDeploy)"},
    {"min_p", kAll, S::kImplemented, "", R"({"min_p": 0.05})", "vLLM extension, [0, 1]"},
    {"repetition_penalty", kAll, S::kImplemented, "", R"({"repetition_penalty": 1.1})",
     "vLLM/LMDeploy extension, (0, 10], over prompt and output tokens"},
    {"presence_penalty", kStateless, S::kImplemented, "", R"({"presence_penalty": 0.5})",
     "-2 to 2, over generated tokens"},
    {"frequency_penalty", kStateless, S::kImplemented, "", R"({"frequency_penalty": 0.5})",
     "-2 to 2, over generated tokens"},
    {"logit_bias", kStateless, S::kImplemented, "", R"({"logit_bias": {"28": -100}})",
     "token id → bias in [-100, 100] added to its logit before penalties and sampling (greedy too): -100 bans "
     "it, 100 all but forces it; up to 1024 entries"},
    {"seed", kAll, S::kImplemented, "", R"({"seed": 7})",
     "the same seed gives the same output whatever else is in the batch, on CPU or GPU"},
    // What comes back.
    {"logprobs", kChats, S::kImplemented, "", R"({"logprobs": true})", "chat: a boolean"},
    {"logprobs", kCompletions, S::kImplemented, "", R"({"logprobs": 2})",
     "completions: 0 to 20 alternatives per token (OpenAI's legacy `tokens`/`token_logprobs` shape)"},
    {"top_logprobs", kChats, S::kImplemented, "", R"({"logprobs": true, "top_logprobs": 2})",
     "0 to 20 alternatives per token; needs `logprobs: true`"},
    {"echo", kCompletions, S::kImplemented, "", R"({"echo": true})",
     "the prompt comes first in the text; with logprobs, its tokens' logprobs too (the first one's is null)"},
    {"skip_special_tokens", kAll, S::kImplemented, "", R"({"skip_special_tokens": false})",
     "vLLM/LMDeploy extension, default true; false writes control tokens (e.g. `<|im_end|>` under ignore_eos) into "
     "the text"},
    {"spaces_between_special_tokens", kAll, S::kIgnored, "", R"({"spaces_between_special_tokens": false})",
     "byte-level BPE text is the tokens' exact bytes: no spaces are inserted around special tokens either way"},
    {"stream", kAll, S::kImplemented, "", R"({"stream": true})",
     "SSE chunks ending with `data: [DONE]` (interactive_qos: one JSON object per line)"},
    {"stream_options", kStateless, S::kImplemented, "", R"({"stream": true, "stream_options": {"include_usage": true}})",
     "`include_usage`: a last chunk with the usage; `include_obfuscation` is accepted and meaningless (no "
     "padding is added)"},
    // Structured output.
    {"response_format", kStateless, S::kImplemented, "", R"({"response_format": {"type": "json_object"}})",
     "`text`, `json_object`, `json_schema` (with `strict`), enforced by constrained decoding; a schema keyword "
     "outside the supported subset → 400 naming it; a schema past a limit (64 KiB, 64 levels, 100,000 pattern "
     "nodes, 200,000 NFA states, 1 s to compile) → 400 naming the limit"},
    {"guided_json", kStateless, S::kImplemented, "", R"({"guided_json": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}})",
     "vLLM extension: a JSON schema, enforced as `json_schema`, within the same limits"},
    {"guided_regex", kStateless, S::kImplemented, "", R"({"guided_regex": "[0-9]{3}"})",
     "vLLM extension: the whole output matches the regular expression; past 64 KiB, 64 nested groups, a "
     "quantifier on a quantifier or the schema limits → 400 naming the limit"},
    {"guided_choice", kStateless, S::kImplemented, "", R"({"guided_choice": ["yes", "no"]})",
     "vLLM extension: the output is exactly one of the strings; past 64 KiB of choices → 400"},
    {"guided_grammar", kStateless, S::kRefused, "", R"({"guided_grammar": "root ::= \"a\""})",
     "EBNF grammars are not supported: use guided_regex or a JSON schema"},
    // Tools.
    {"tools", kChats, S::kImplemented, "",
     R"({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]})",
     "for models whose chat template defines tool calls (Qwen2.5/Hermes `<tool_call>` style); calls come back in "
     "`message.tool_calls`. The default SmolLM2's template has none: 400"},
    {"tool_choice", kChats, S::kImplemented, "",
     R"({"tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]})",
     "`none`, `auto`, `required` or `{\"type\": \"function\", \"function\": {\"name\": ...}}`; required and named "
     "calls are enforced by constrained decoding"},
    {"parallel_tool_calls", kChats, S::kImplemented, "",
     R"({"parallel_tool_calls": false, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]})",
     "false: at most one call per answer"},
    {"functions", kChats, S::kRefused, "", R"({"functions": [{"name": "f", "parameters": {}}]})",
     "deprecated by OpenAI: use tools"},
    {"function_call", kChats, S::kRefused, "", R"({"function_call": "auto"})", "deprecated by OpenAI: use tool_choice"},
    // OpenAI features with no counterpart here.
    {"audio", kChats, S::kRefused, "", R"({"audio": {"voice": "alloy", "format": "wav"}})", "no audio output"},
    {"modalities", kChats, S::kRefused, R"(["text"])", R"({"modalities": ["text", "audio"]})",
     "text output only; `[\"text\"]` is accepted"},
    {"reasoning_effort", kChats, S::kRefused, "", R"({"reasoning_effort": "low"})", "not a reasoning model"},
    {"verbosity", kChats, S::kRefused, "", R"({"verbosity": "low"})", "no such control for these models"},
    {"web_search_options", kChats, S::kRefused, "", R"({"web_search_options": {}})", "no web search"},
    {"best_of", kCompletions, S::kRefused, "1", R"({"best_of": 2})",
     "server-side best-of ranking is not implemented (1, the default, is accepted): ask for `n` choices with "
     "logprobs instead"},
    {"suffix", kCompletions, S::kRefused, R"("")", R"({"suffix": " end."})",
     "fill-in-the-middle needs a model trained for it (the default SmolLM2 Instruct is not)"},
    {"prediction", kChats, S::kIgnored, "", R"({"prediction": {"type": "content", "content": "Hi"}})",
     "predicted outputs only make OpenAI faster; the output is the same without them"},
    {"store", kChats, S::kIgnored, "", R"({"store": true})",
     "nothing is stored: there is no stored-completions API here"},
    {"metadata", kChats, S::kIgnored, "", R"({"metadata": {"k": "v"}})", "tags for stored completions (none here)"},
    {"service_tier", kChats, S::kIgnored, "", R"({"service_tier": "auto"})",
     "priority comes from the user's group in qos_config.json, never from the request"},
    {"prompt_cache_key", kChats, S::kIgnored, "", R"({"prompt_cache_key": "k"})",
     "the prefix cache is automatic, keyed by the prompt's tokens"},
    {"safety_identifier", kChats, S::kIgnored, "", R"({"safety_identifier": "s"})",
     "OpenAI's abuse-monitoring id; there is none here (QoS reads `user`)"},
    // Who and which session.
    {"user", kStateless, S::kImplemented, "", R"({"user": "user_id1"})",
     "the QoS user (the key must be allowed to act for it); default: the key's own user"},
    {"user_id", kQos, S::kImplemented, "", R"({"user_id": "user_id4"})",
     "LMDeploy's user (wins over `user`); required while QoS is on"},
    {"session_id", kRouteInteractive, S::kImplemented, "", R"({"session_id": 11})",
     "the conversation kept server-side for this user; -1: none"},
    {"session_id", kRouteChatQos | kRouteCompletionQos, S::kIgnored, "", R"({"session_id": 3})",
     "LMDeploy's engine-side id for a stateless request; tiergate assigns its own ids"},
    {"interactive_mode", kRouteInteractive, S::kImplemented, "", R"({"interactive_mode": true})",
     "true keeps this turn in the session's history; false ends the session after it"},
    {"interactive_mode", kRouteChatQos | kRouteCompletionQos, S::kRefused, "false", R"({"interactive_mode": true})",
     "these routes are stateless (`false` is accepted): sessions live on interactive_qos"},
    {"cancel", kRouteInteractive, S::kRefused, "false", R"({"cancel": true})",
     "cancel a running turn by closing its connection (`false` is accepted)"},
    {"image_url", kRouteInteractive, S::kRefused, "", R"({"image_url": "https://example.com/cat.png"})",
     "text models only"},
    {"adapter_name", kRouteInteractive, S::kRefused, "", R"({"adapter_name": "lora"})", "no LoRA adapters"},
};

const char* route_name(unsigned bit) {
  switch (bit) {
    case kRouteChat: return "chat";
    case kRouteCompletion: return "completions";
    case kRouteChatQos: return "chat_qos";
    case kRouteCompletionQos: return "completions_qos";
    case kRouteInteractive: return "interactive_qos";
    default: return "?";
  }
}

// Markdown table cells hold no '|' unescaped.
std::string cell(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

RouteBit route_bit(Endpoint endpoint, bool qos_route) {
  switch (endpoint) {
    case Endpoint::kChat: return qos_route ? kRouteChatQos : kRouteChat;
    case Endpoint::kCompletion: return qos_route ? kRouteCompletionQos : kRouteCompletion;
    case Endpoint::kInteractive: break;
  }
  return kRouteInteractive;
}

const char* to_string(FieldStatus status) {
  switch (status) {
    case FieldStatus::kImplemented: return "implemented";
    case FieldStatus::kRefused: return "refused";
    case FieldStatus::kIgnored: return "ignored";
  }
  return "?";
}

std::span<const RequestField> request_fields() { return kFields; }

const RequestField* find_request_field(std::string_view name, RouteBit route) {
  for (const RequestField& f : kFields) {
    if (f.name == name && (f.routes & route) != 0) return &f;
  }
  return nullptr;
}

std::optional<ApiError> check_request_fields(const simdjson::dom::object& body, RouteBit route) {
  for (const auto member : body) {
    const std::string_view key = member.key;
    const RequestField* field = find_request_field(key, route);
    if (field == nullptr) {
      return ApiError{400,
                      "Unknown parameter: '" + std::string(key) + "' (not a field of " + route_name(route) +
                          " requests here; README.md lists every field this server reads)",
                      "invalid_request_error", std::string(key), "unknown_parameter"};
    }
    if (field->status != FieldStatus::kRefused || member.value.is_null()) continue;
    if (!field->neutral.empty() && simdjson::minify(member.value) == field->neutral) continue;
    return ApiError{400, "Unsupported parameter: '" + std::string(key) + "': " + std::string(field->note),
                    "invalid_request_error", std::string(key), "unsupported_parameter"};
  }
  return std::nullopt;
}

std::string request_fields_markdown() {
  std::string out = "| field | routes | status | example | notes |\n| --- | --- | --- | --- | --- |\n";
  for (const RequestField& f : kFields) {
    std::string routes;
    for (unsigned bit = kRouteChat; bit <= kRouteInteractive; bit <<= 1) {
      if (f.routes & bit) routes += (routes.empty() ? "" : ", ") + std::string(route_name(bit));
    }
    out += "| `" + std::string(f.name) + "` | " + routes + " | " + to_string(f.status) + " | `" + cell(f.example) +
           "` | " + cell(f.note) + " |\n";
  }
  return out;
}

}  // namespace tiergate::gateway
