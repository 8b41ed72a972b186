#include "gateway/openai_protocol.h"

#include <simdjson.h>

#include <boost/json.hpp>
#include <cmath>
#include <limits>

#include "engine/unicode.h"
#include "gateway/generation_options.h"
#include "gateway/logprobs_json.h"
#include "gateway/request_fields.h"
#include "qos/config_writer.h"

namespace tiergate::gateway {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;
using qos::json_number;
using qos::json_string;

ApiError bad(std::string param, std::string message) {
  return ApiError{400, std::move(message), "invalid_request_error", std::move(param), ""};
}

bool is_number(element e) {
  const auto t = e.type();
  return t == element_type::INT64 || t == element_type::UINT64 || t == element_type::DOUBLE;
}

double number(element e) {
  switch (e.type()) {
    case element_type::INT64: return static_cast<double>(e.get_int64().value_unsafe());
    case element_type::UINT64: return static_cast<double>(e.get_uint64().value_unsafe());
    default: return e.get_double().value_unsafe();
  }
}

// Reads optional numeric field `key` into `out`; integer fields must be whole numbers.
std::optional<ApiError> read_number(simdjson::dom::object obj, const char* key, double& out, bool integer,
                                    bool& present) {
  element e;
  present = false;
  if (obj[key].get(e) != simdjson::SUCCESS || e.type() == element_type::NULL_VALUE) return std::nullopt;
  if (!is_number(e)) return bad(key, std::string("'") + key + "' must be a number");
  out = number(e);
  if (!std::isfinite(out)) return bad(key, std::string("'") + key + "' must be finite");
  if (integer && std::floor(out) != out) return bad(key, std::string("'") + key + "' must be an integer");
  present = true;
  return std::nullopt;
}

// Optional fields of a fixed type: absent or null leaves `out`; another type is a 400 naming it.
std::optional<ApiError> read_optional_bool(simdjson::dom::object obj, const char* key, bool& out) {
  element e;
  if (obj[key].get(e) != simdjson::SUCCESS || e.type() == element_type::NULL_VALUE) return std::nullopt;
  if (e.get_bool().get(out) != simdjson::SUCCESS) return bad(key, std::string("'") + key + "' must be true or false");
  return std::nullopt;
}

std::optional<ApiError> read_optional_string(simdjson::dom::object obj, const char* key, std::string& out) {
  element e;
  std::string_view text;
  if (obj[key].get(e) != simdjson::SUCCESS || e.type() == element_type::NULL_VALUE) return std::nullopt;
  if (e.get_string().get(text) != simdjson::SUCCESS) return bad(key, std::string("'") + key + "' must be a string");
  out = std::string(text);
  return std::nullopt;
}

std::optional<ApiError> read_content(element content, std::string& out) {
  std::string_view text;
  if (content.get_string().get(text) == simdjson::SUCCESS) {
    out = std::string(text);
    return std::nullopt;
  }
  simdjson::dom::array parts;
  if (content.get_array().get(parts) != simdjson::SUCCESS) {
    return bad("messages", "a message's 'content' must be a string or a list of text parts");
  }
  for (element part : parts) {
    std::string_view type, t;
    if (part["type"].get_string().get(type) != simdjson::SUCCESS || type != "text" ||
        part["text"].get_string().get(t) != simdjson::SUCCESS) {
      return bad("messages", "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
    }
    out += t;
  }
  return std::nullopt;
}

}  // namespace

std::string ApiError::to_json() const {
  // A message may quote what the client sent before any validation (a request path, a header), and
  // Boost.JSON 1.81 copies bytes >= 0x80 through unchecked: repair to UTF-8 first (U+FFFD), so the
  // body is JSON every client can parse.
  auto text = [](const std::string& s) { return boost::json::value(boost::json::string(engine::to_valid_utf8(s))); };
  auto text_or_null = [&](const std::string& s) { return s.empty() ? boost::json::value(nullptr) : text(s); };
  boost::json::object error;
  error["message"] = text(message);
  error["type"] = text(type);
  error["param"] = text_or_null(param);
  error["code"] = text_or_null(code);
  boost::json::object body;
  body["error"] = std::move(error);
  return boost::json::serialize(body);
}

std::variant<GenerationRequest, ApiError> parse_generation(std::string_view body, Endpoint endpoint, bool qos_route) {
  simdjson::dom::parser parser;
  const simdjson::padded_string padded(body);
  element root;
  if (auto code = parser.parse(padded).get(root); code != simdjson::SUCCESS) {
    return bad("", std::string("the request body is not valid JSON: ") + simdjson::error_message(code));
  }
  simdjson::dom::object obj;
  if (root.get_object().get(obj) != simdjson::SUCCESS) return bad("", "the request body must be a JSON object");
  if (auto e = check_request_fields(obj, route_bit(endpoint, qos_route))) return *e;  // nothing unknown or refused
  GenerationRequest req;
  req.endpoint = endpoint;
  std::string_view text;
  if (auto e = read_optional_string(obj, "model", req.model)) return *e;

  if (endpoint == Endpoint::kInteractive) {
    if (obj["prompt"].get_string().get(text) != simdjson::SUCCESS) return bad("prompt", "'prompt' must be a string");
    req.messages.push_back({"user", std::string(text)});
    element sid;
    if (obj["session_id"].get(sid) == simdjson::SUCCESS && sid.type() != element_type::NULL_VALUE) {
      if (sid.type() != element_type::INT64) return bad("session_id", "'session_id' must be an integer (-1 for none)");
      req.session_id = sid.get_int64().value_unsafe();
    }
    if (auto e = read_optional_bool(obj, "interactive_mode", req.interactive_mode)) return *e;
  } else if (endpoint == Endpoint::kChat) {
    element messages;
    if (obj["messages"].get(messages) != simdjson::SUCCESS) return bad("messages", "'messages' is required");
    if (qos_route && messages.get_string().get(text) == simdjson::SUCCESS) {
      req.messages.push_back({"user", std::string(text)});  // LMDeploy-QoS accepts a bare string
    } else {
      simdjson::dom::array list;
      if (messages.get_array().get(list) != simdjson::SUCCESS) return bad("messages", "'messages' must be a list");
      for (element m : list) {
        engine::ChatMessage msg;
        if (m["role"].get_string().get(text) != simdjson::SUCCESS) return bad("messages", "every message needs a 'role'");
        if (text != "system" && text != "user" && text != "assistant" && text != "tool" && text != "developer") {
          return bad("messages", "unknown role '" + std::string(text) + "'");
        }
        msg.role = text == "developer" ? "system" : std::string(text);
        if (auto e = parse_message_tool_calls(m, msg)) return *e;  // an assistant's calls
        element content;
        const bool has_content = m["content"].get(content) == simdjson::SUCCESS && !content.is_null();
        if (!has_content && msg.tool_calls.empty()) return bad("messages", "every message needs 'content'");
        if (has_content) {
          if (auto e = read_content(content, msg.content)) return *e;
        }
        req.messages.push_back(std::move(msg));
      }
      if (req.messages.empty()) return bad("messages", "'messages' must not be empty");
    }
  } else {
    element prompt;
    if (obj["prompt"].get(prompt) != simdjson::SUCCESS) return bad("prompt", "'prompt' is required");
    if (prompt.get_string().get(text) == simdjson::SUCCESS) {
      req.prompt = std::string(text);
    } else {
      simdjson::dom::array list;
      if (prompt.get_array().get(list) != simdjson::SUCCESS || list.size() != 1 ||
          list.at(0).get_string().get(text) != simdjson::SUCCESS) {
        return bad("prompt", "'prompt' must be a string (or a list holding one string)");
      }
      req.prompt = std::string(text);
    }
  }

  engine::SamplingParams& p = req.params;
  double v = 0;
  bool present = false;
  for (const char* key : {"max_tokens", "max_completion_tokens", "request_output_len"}) {
    if (auto e = read_number(obj, key, v, true, present)) return *e;
    if (present) {
      if (v < 1) return bad(key, std::string("'") + key + "' must be at least 1");
      p.max_tokens = static_cast<std::int64_t>(std::min(v, 1e9));
      req.max_tokens_given = true;
    }
  }
  struct FloatField {
    const char* key;
    float* target;
  };
  for (FloatField f : {FloatField{"temperature", &p.temperature}, FloatField{"top_p", &p.top_p},
                       FloatField{"min_p", &p.min_p}, FloatField{"repetition_penalty", &p.repetition_penalty},
                       FloatField{"presence_penalty", &p.presence_penalty},
                       FloatField{"frequency_penalty", &p.frequency_penalty}}) {
    if (auto e = read_number(obj, f.key, v, false, present)) return *e;
    // Out of float's range is out of every parameter's range: validate() names it; the clamp
    // keeps the conversion defined.
    if (present) *f.target = static_cast<float>(std::clamp(v, -1e30, 1e30));
  }
  if (auto e = read_number(obj, "top_k", v, true, present)) return *e;
  if (present) p.top_k = static_cast<std::int32_t>(std::clamp(v, -1.0, 1e9));
  if (auto e = read_number(obj, "n", v, true, present)) return *e;
  if (present) p.n = static_cast<std::int32_t>(std::clamp(v, -1.0, 1e6));
  // Any 64-bit seed, signed or not (negative ones wrap as two's complement); read as an integer,
  // since a double cannot hold every 64-bit value.
  element seed;
  if (obj["seed"].get(seed) == simdjson::SUCCESS && seed.type() != element_type::NULL_VALUE) {
    if (seed.type() == element_type::INT64) {
      p.seed = static_cast<std::uint64_t>(seed.get_int64().value_unsafe());
    } else if (seed.type() == element_type::UINT64) {
      p.seed = seed.get_uint64().value_unsafe();
    } else if (seed.type() == element_type::DOUBLE) {
      const double d = seed.get_double().value_unsafe();
      if (std::floor(d) != d || !(std::fabs(d) < 9.2e18)) return bad("seed", "'seed' must be an integer that fits in 64 bits");
      p.seed = static_cast<std::uint64_t>(static_cast<std::int64_t>(d));
    } else {
      return bad("seed", "'seed' must be a number");
    }
  }

  element stop;
  if (obj["stop"].get(stop) == simdjson::SUCCESS && stop.type() != element_type::NULL_VALUE) {
    bool flag = false;
    if (stop.get_bool().get(flag) == simdjson::SUCCESS) {
      if (flag && endpoint == Endpoint::kInteractive) req.end_session = true;  // LMDeploy: ends the session
      if (flag && endpoint != Endpoint::kInteractive) {
        return bad("stop", "'stop' must be a string or a list of strings ('true' ends a session on interactive_qos)");
      }
    } else if (stop.get_string().get(text) == simdjson::SUCCESS) {
      p.stop.emplace_back(text);
    } else {
      simdjson::dom::array list;
      if (stop.get_array().get(list) != simdjson::SUCCESS) return bad("stop", "'stop' must be a string or a list of strings");
      for (element s : list) {
        if (s.get_string().get(text) != simdjson::SUCCESS) return bad("stop", "'stop' must hold strings only");
        p.stop.emplace_back(text);
      }
    }
  }
  bool flag = false;
  if (auto e = read_optional_bool(obj, "ignore_eos", p.ignore_eos)) return *e;
  if (auto e = read_optional_bool(obj, "stream", req.stream)) return *e;
  element stream_options;
  if (obj["stream_options"].get(stream_options) == simdjson::SUCCESS && stream_options.type() != element_type::NULL_VALUE) {
    simdjson::dom::object options;
    if (stream_options.get_object().get(options) != simdjson::SUCCESS) {
      return bad("stream_options", "'stream_options' must be an object");
    }
    if (auto e = read_optional_bool(options, "include_usage", req.include_usage)) {
      e->param = "stream_options";
      return *e;
    }
  }
  // logprobs: a boolean for chat, an integer (number of alternatives) for completions.
  element logprobs;
  if (obj["logprobs"].get(logprobs) == simdjson::SUCCESS && logprobs.type() != element_type::NULL_VALUE) {
    if (logprobs.get_bool().get(flag) == simdjson::SUCCESS) {
      p.logprobs = flag;
    } else if (is_number(logprobs) && number(logprobs) >= 0 && number(logprobs) <= 20) {
      p.logprobs = true;
      p.top_logprobs = static_cast<std::int32_t>(number(logprobs));
    } else {
      return bad("logprobs", "'logprobs' must be a boolean (chat) or an integer from 0 to 20 (completions)");
    }
  }
  if (auto e = read_number(obj, "top_logprobs", v, true, present)) return *e;
  if (present) {
    if (!p.logprobs && endpoint == Endpoint::kChat) return bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    p.top_logprobs = static_cast<std::int32_t>(std::clamp(v, -1.0, 1e6));
  }
  for (const char* key : {"user", "user_id"}) {
    element u;
    if (obj[key].get(u) != simdjson::SUCCESS || u.type() == element_type::NULL_VALUE) continue;
    if (u.get_string().get(text) != simdjson::SUCCESS) return bad(key, std::string("'") + key + "' must be a string");
    req.user = std::string(text);
  }
  if (auto e = parse_generation_options(obj, endpoint, qos_route, req)) return *e;
  return req;
}

std::string tool_calls_json(const std::vector<engine::ToolCall>& calls) {
  std::string out = "[";
  for (std::size_t i = 0; i < calls.size(); ++i) {
    out += (i ? ", " : "") + std::string("{\"id\": ") + json_string(calls[i].id) +
           ", \"type\": \"function\", \"function\": {\"name\": " + json_string(calls[i].name) +
           ", \"arguments\": " + json_string(calls[i].arguments) + "}}";
  }
  return out + "]";
}

std::string completion_body(const GenerationRequest& req, const std::string& id, long created,
                            const std::vector<ChoiceResult>& choices, std::size_t prompt_tokens,
                            std::size_t completion_tokens, const engine::Tokenizer& tokenizer) {
  const bool chat = req.endpoint == Endpoint::kChat;
  std::string out = "{\"id\": " + json_string(id) + ", \"object\": \"" + (chat ? "chat.completion" : "text_completion") +
                    "\", \"created\": " + std::to_string(created) + ", \"model\": " + json_string(req.model) +
                    ", \"choices\": [";
  for (std::size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    out += (i ? ", " : "") + std::string("{\"index\": ") + std::to_string(i) + ", ";
    std::string logprobs = "null";
    if (req.params.logprobs) {
      std::size_t offset = 0;
      logprobs = chat ? chat_logprobs_json(c.logprobs, tokenizer) : completion_logprobs_json(c.logprobs, tokenizer, offset);
    }
    if (chat) {
      // With tool calls the content is what the model wrote around them, null when nothing.
      const bool calls = !c.tool_calls.empty();
      out += "\"message\": {\"role\": \"assistant\", \"content\": " +
             (calls && c.text.empty() ? std::string("null") : json_string(c.text));
      if (calls) out += ", \"tool_calls\": " + tool_calls_json(c.tool_calls);
      out += "}";
    } else {
      out += "\"text\": " + json_string(c.text);
    }
    out += ", \"logprobs\": " + logprobs + ", \"finish_reason\": " + json_string(c.finish_reason) + "}";
  }
  out += "], \"usage\": {\"prompt_tokens\": " + std::to_string(prompt_tokens) +
         ", \"completion_tokens\": " + std::to_string(completion_tokens) +
         ", \"total_tokens\": " + std::to_string(prompt_tokens + completion_tokens) + "}}";
  return out;
}

std::string stream_chunk(const GenerationRequest& req, const std::string& id, long created, int index,
                         const ChoiceDelta& delta, bool first, const std::string& finish_reason,
                         const engine::Tokenizer& tokenizer, std::size_t& text_offset) {
  const bool chat = req.endpoint == Endpoint::kChat;
  std::string out = "data: {\"id\": " + json_string(id) + ", \"object\": \"" +
                    (chat ? "chat.completion.chunk" : "text_completion") + "\", \"created\": " +
                    std::to_string(created) + ", \"model\": " + json_string(req.model) +
                    ", \"choices\": [{\"index\": " + std::to_string(index) + ", ";
  if (chat) {
    out += "\"delta\": {" + std::string(first ? "\"role\": \"assistant\", " : "");
    if (!delta.tool_calls.empty()) {
      out += "\"content\": " + (delta.text.empty() ? std::string("null") : json_string(delta.text)) +
             ", \"tool_calls\": " + delta.tool_calls + "}";
    } else {
      out += "\"content\": " + json_string(delta.text) + "}";
    }
  } else {
    out += "\"text\": " + json_string(delta.text);
  }
  std::string logprobs = "null";
  if (req.params.logprobs && !delta.logprobs.empty()) {
    logprobs = chat ? chat_logprobs_json(delta.logprobs, tokenizer)
                    : completion_logprobs_json(delta.logprobs, tokenizer, text_offset);
  }
  out += ", \"logprobs\": " + logprobs + ", \"finish_reason\": " +
         (finish_reason.empty() ? std::string("null") : json_string(finish_reason)) + "}]}\n\n";
  return out;
}

std::string interactive_body(const std::string& text, std::size_t tokens, std::size_t input_tokens,
                             std::size_t history_tokens, const std::string& finish_reason) {
  return "{\"text\": " + json_string(text) + ", \"tokens\": " + std::to_string(tokens) +
         ", \"input_tokens\": " + std::to_string(input_tokens) + ", \"history_tokens\": " +
         std::to_string(history_tokens) + ", \"finish_reason\": " +
         (finish_reason.empty() ? std::string("null") : json_string(finish_reason)) + "}";
}

std::string interactive_chunk(const std::string& text, std::size_t tokens, const std::string& finish_reason) {
  return "{\"text\": " + json_string(text) + ", \"tokens\": " + std::to_string(tokens) + ", \"finish_reason\": " +
         (finish_reason.empty() ? std::string("null") : json_string(finish_reason)) + "}\n";
}

std::string stream_usage_chunk(const GenerationRequest& req, const std::string& id, long created,
                               std::size_t prompt_tokens, std::size_t completion_tokens) {
  const bool chat = req.endpoint == Endpoint::kChat;
  return "data: {\"id\": " + json_string(id) + ", \"object\": \"" + (chat ? "chat.completion.chunk" : "text_completion") +
         "\", \"created\": " + std::to_string(created) + ", \"model\": " + json_string(req.model) +
         ", \"choices\": [], \"usage\": {\"prompt_tokens\": " + std::to_string(prompt_tokens) +
         ", \"completion_tokens\": " + std::to_string(completion_tokens) +
         ", \"total_tokens\": " + std::to_string(prompt_tokens + completion_tokens) + "}}\n\n";
}

}  // namespace tiergate::gateway
