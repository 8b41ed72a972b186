#include "gateway/generation_options.h"

#include <simdjson.h>

#include <charconv>
#include <cmath>
#include <set>

namespace tiergate::gateway {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

ApiError bad(std::string param, std::string message) {
  return ApiError{400, std::move(message), "invalid_request_error", std::move(param), ""};
}

// The member `key`, or nullopt when it is absent or null (clients send null for "not given").
std::optional<element> member(const simdjson::dom::object& obj, std::string_view key) {
  element e;
  if (obj[key].get(e) != simdjson::SUCCESS || e.is_null()) return std::nullopt;
  return e;
}

std::optional<ApiError> read_bool(const simdjson::dom::object& obj, const char* key, bool& out) {
  const auto e = member(obj, key);
  if (!e) return std::nullopt;
  if (e->get_bool().get(out) != simdjson::SUCCESS) return bad(key, std::string("'") + key + "' must be a boolean");
  return std::nullopt;
}

// LMDeploy 0.5.3's defaults on its routes for what the body leaves out (DESIGN.md §5), so that a
// backend moving from LMDeploy samples the same way. Explicit values were parsed already.
void apply_lmdeploy_defaults(const simdjson::dom::object& obj, Endpoint endpoint, GenerationRequest& req) {
  engine::SamplingParams& p = req.params;
  const bool interactive = endpoint == Endpoint::kInteractive;
  if (!member(obj, "temperature")) p.temperature = interactive ? 0.8f : 0.7f;
  if (!member(obj, "top_p")) p.top_p = interactive ? 0.8f : 1.0f;
  if (!member(obj, "top_k")) p.top_k = 40;
  const bool length_given =
      member(obj, "max_tokens") || member(obj, "max_completion_tokens") || member(obj, "request_output_len");
  if (endpoint == Endpoint::kCompletion && !length_given) {
    p.max_tokens = 16;
    req.max_tokens_given = true;
  }
  // interactive_qos's request_output_len 512 and chat_qos's 512 are the gateway's own default
  // (512, or what the context leaves), so a long session is not refused for a default it did not ask.
}

std::optional<ApiError> parse_logit_bias(const simdjson::dom::object& obj, engine::SamplingParams& p) {
  const auto e = member(obj, "logit_bias");
  if (!e) return std::nullopt;
  simdjson::dom::object biases;
  if (e->get_object().get(biases) != simdjson::SUCCESS) {
    return bad("logit_bias", "'logit_bias' must be an object mapping token ids (as strings) to biases");
  }
  for (const auto entry : biases) {
    const std::string_view key = entry.key;
    std::int64_t token = -1;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), token);
    if (ec != std::errc() || end != key.data() + key.size() || key.empty() || token < 0 || token > INT32_MAX) {
      return bad("logit_bias", "'logit_bias' keys must be token ids (non-negative integers), found '" +
                                   std::string(key) + "'");
    }
    double bias = 0;
    const element v = entry.value;
    if (v.type() == element_type::INT64) {
      bias = static_cast<double>(v.get_int64().value_unsafe());
    } else if (v.type() == element_type::UINT64) {
      bias = static_cast<double>(v.get_uint64().value_unsafe());
    } else if (v.type() == element_type::DOUBLE) {
      bias = v.get_double().value_unsafe();
    } else {
      return bad("logit_bias", "the bias of token " + std::string(key) + " must be a number from -100 to 100");
    }
    if (!std::isfinite(bias) || bias < -100 || bias > 100) {
      return bad("logit_bias", "the bias of token " + std::string(key) + " must be between -100 and 100");
    }
    p.logit_bias.emplace_back(static_cast<std::int32_t>(token), static_cast<float>(bias));
  }
  return std::nullopt;  // range and duplicates: engine::validate, which knows the vocabulary
}

std::optional<ApiError> check_stream_options(const simdjson::dom::object& obj, const GenerationRequest& req) {
  const auto e = member(obj, "stream_options");
  if (!e) return std::nullopt;
  simdjson::dom::object options;
  if (e->get_object().get(options) != simdjson::SUCCESS) return bad("stream_options", "'stream_options' must be an object");
  if (!req.stream) return bad("stream_options", "'stream_options' is only allowed with 'stream': true");
  for (const auto o : options) {
    if (o.key != "include_usage" && o.key != "include_obfuscation") {
      return bad("stream_options", "unknown key '" + std::string(o.key) +
                                       "' in 'stream_options' (include_usage and include_obfuscation are read)");
    }
    if (!o.value.is_null() && !o.value.is_bool()) {
      return bad("stream_options", "'stream_options." + std::string(o.key) + "' must be a boolean");
    }
  }
  return std::nullopt;
}

// A schema given as an object (or, as vLLM also takes it, as a JSON string holding one).
std::optional<ApiError> schema_text(element e, const std::string& param, std::string& out) {
  std::string_view text;
  if (e.get_string().get(text) == simdjson::SUCCESS) {
    simdjson::dom::parser parser;
    element parsed;
    if (parser.parse(simdjson::padded_string(text)).get(parsed) != simdjson::SUCCESS || !parsed.is_object()) {
      return bad(param, "'" + param + "' must be a JSON schema (an object, or a string holding one)");
    }
    out = simdjson::minify(parsed);
    return std::nullopt;
  }
  if (!e.is_object() && !e.is_bool()) return bad(param, "'" + param + "' must be a JSON schema object");
  out = simdjson::minify(e);
  return std::nullopt;
}

std::optional<ApiError> parse_response_format(element e, std::optional<engine::GrammarSpec>& out) {
  simdjson::dom::object format;
  if (e.get_object().get(format) != simdjson::SUCCESS) {
    return bad("response_format", "'response_format' must be an object such as {\"type\": \"json_object\"}");
  }
  std::string_view type;
  if (format["type"].get_string().get(type) != simdjson::SUCCESS) {
    return bad("response_format", "'response_format.type' must be one of text, json_object, json_schema");
  }
  for (const auto m : format) {
    const bool known = m.key == "type" || (type == "json_schema" && m.key == "json_schema") ||
                       (type == "regex_schema" && m.key == "regex_schema");
    if (!known) return bad("response_format", "unknown key '" + std::string(m.key) + "' in 'response_format'");
  }
  if (type == "text") return std::nullopt;
  engine::GrammarSpec spec;
  spec.param = "response_format";
  if (type == "json_object") {
    spec.kind = engine::GrammarSpec::Kind::kJsonValue;
  } else if (type == "json_schema") {
    simdjson::dom::object js;
    if (format["json_schema"].get_object().get(js) != simdjson::SUCCESS) {
      return bad("response_format", "'response_format.json_schema' must be an object with 'name' and 'schema'");
    }
    for (const auto m : js) {
      if (m.key != "name" && m.key != "description" && m.key != "schema" && m.key != "strict") {
        return bad("response_format", "unknown key '" + std::string(m.key) + "' in 'response_format.json_schema'");
      }
    }
    std::string_view name;
    if (js["name"].get_string().get(name) != simdjson::SUCCESS || name.empty() || name.size() > 64) {
      return bad("response_format", "'response_format.json_schema.name' must be a string of 1 to 64 characters");
    }
    element schema;
    if (js["schema"].get(schema) != simdjson::SUCCESS || schema.is_null()) {
      spec.kind = engine::GrammarSpec::Kind::kJsonValue;  // no schema: any JSON object
    } else {
      spec.kind = engine::GrammarSpec::Kind::kJsonSchema;
      if (!schema.is_object()) return bad("response_format", "'response_format.json_schema.schema' must be an object");
      spec.source = simdjson::minify(schema);
    }
    element strict;
    if (js["strict"].get(strict) == simdjson::SUCCESS && !strict.is_null()) {
      if (!strict.is_bool()) return bad("response_format", "'response_format.json_schema.strict' must be a boolean");
      spec.strict = strict.get_bool().value_unsafe();
    }
  } else if (type == "regex_schema") {  // LMDeploy's extension
    std::string_view regex;
    if (format["regex_schema"].get_string().get(regex) != simdjson::SUCCESS) {
      return bad("response_format", "'response_format.regex_schema' must be a string");
    }
    spec.kind = engine::GrammarSpec::Kind::kRegex;
    spec.source = std::string(regex);
  } else {
    return bad("response_format", "'response_format.type' must be one of text, json_object, json_schema (found '" +
                                      std::string(type) + "')");
  }
  out = std::move(spec);
  return std::nullopt;
}

std::optional<ApiError> parse_constraints(const simdjson::dom::object& obj, GenerationRequest& req) {
  for (const char* key : {"response_format", "guided_json", "guided_regex", "guided_choice"}) {
    const auto e = member(obj, key);
    if (!e) continue;
    std::optional<engine::GrammarSpec> spec;
    const std::string param = key;
    if (param == "response_format") {
      if (auto err = parse_response_format(*e, spec)) return err;
    } else if (param == "guided_json") {
      engine::GrammarSpec s{engine::GrammarSpec::Kind::kJsonSchema, "", false, param};
      if (auto err = schema_text(*e, param, s.source)) return err;
      spec = std::move(s);
    } else if (param == "guided_regex") {
      std::string_view regex;
      if (e->get_string().get(regex) != simdjson::SUCCESS) return bad(param, "'guided_regex' must be a string");
      spec = engine::GrammarSpec{engine::GrammarSpec::Kind::kRegex, std::string(regex), false, param};
    } else {
      simdjson::dom::array choices;
      if (e->get_array().get(choices) != simdjson::SUCCESS || choices.size() == 0) {
        return bad(param, "'guided_choice' must be a non-empty list of strings");
      }
      for (element c : choices) {
        if (!c.is_string()) return bad(param, "'guided_choice' must hold strings only");
      }
      spec = engine::GrammarSpec{engine::GrammarSpec::Kind::kChoice, simdjson::minify(*e), false, param};
    }
    if (!spec) continue;  // response_format text
    if (req.grammar) {
      return bad(param, "'" + param + "' cannot be combined with '" + req.grammar->param +
                            "': one output constraint per request");
    }
    req.grammar = std::move(spec);
  }
  return std::nullopt;
}

bool valid_function_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::optional<ApiError> parse_tools(const simdjson::dom::object& obj, GenerationRequest& req) {
  if (const auto e = member(obj, "tools")) {
    simdjson::dom::array tools;
    if (e->get_array().get(tools) != simdjson::SUCCESS) return bad("tools", "'tools' must be a list of tools");
    std::set<std::string> names;
    for (element t : tools) {
      simdjson::dom::object function;
      std::string_view type, name, description;
      if (t["type"].get_string().get(type) != simdjson::SUCCESS || type != "function" ||
          t["function"].get_object().get(function) != simdjson::SUCCESS) {
        return bad("tools", "every tool must be {\"type\": \"function\", \"function\": {\"name\": ...}} (only function "
                            "tools are supported)");
      }
      if (function["name"].get_string().get(name) != simdjson::SUCCESS || !valid_function_name(name)) {
        return bad("tools", "a function's 'name' must be 1 to 64 letters, digits, '_' or '-'");
      }
      if (!names.insert(std::string(name)).second) return bad("tools", "the function '" + std::string(name) + "' appears twice");
      engine::ToolDefinition tool;
      tool.name = std::string(name);
      if (function["description"].get_string().get(description) == simdjson::SUCCESS) {
        tool.description = std::string(description);
      }
      element parameters;
      if (function["parameters"].get(parameters) == simdjson::SUCCESS && !parameters.is_null()) {
        if (!parameters.is_object()) return bad("tools", "the 'parameters' of '" + tool.name + "' must be a JSON schema object");
        tool.parameters = simdjson::minify(parameters);
      }
      tool.json = simdjson::minify(t);
      req.tools.push_back(std::move(tool));
    }
  }
  if (const auto e = member(obj, "tool_choice")) {
    if (req.tools.empty()) return bad("tool_choice", "'tool_choice' needs 'tools'");
    std::string_view mode;
    simdjson::dom::object named;
    if (e->get_string().get(mode) == simdjson::SUCCESS) {
      if (mode == "none") {
        req.tool_choice.mode = engine::ToolChoice::Mode::kNone;
      } else if (mode == "auto") {
        req.tool_choice.mode = engine::ToolChoice::Mode::kAuto;
      } else if (mode == "required") {
        req.tool_choice.mode = engine::ToolChoice::Mode::kRequired;
      } else {
        return bad("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", ...}");
      }
    } else if (e->get_object().get(named) == simdjson::SUCCESS) {
      std::string_view type, name;
      simdjson::dom::object function;
      if (named["type"].get_string().get(type) != simdjson::SUCCESS || type != "function" ||
          named["function"].get_object().get(function) != simdjson::SUCCESS ||
          function["name"].get_string().get(name) != simdjson::SUCCESS) {
        return bad("tool_choice", "a named 'tool_choice' is {\"type\": \"function\", \"function\": {\"name\": ...}}");
      }
      bool found = false;
      for (const auto& t : req.tools) found |= t.name == name;
      if (!found) return bad("tool_choice", "'tool_choice' names '" + std::string(name) + "', which is not in 'tools'");
      req.tool_choice = {engine::ToolChoice::Mode::kNamed, std::string(name)};
    } else {
      return bad("tool_choice", "'tool_choice' must be a string or an object");
    }
  }
  if (auto e = read_bool(obj, "parallel_tool_calls", req.parallel_tool_calls)) return e;
  if (member(obj, "parallel_tool_calls") && req.tools.empty()) {
    return bad("parallel_tool_calls", "'parallel_tool_calls' needs 'tools'");
  }
  if (!req.tools.empty() && req.tool_choice.mode != engine::ToolChoice::Mode::kNone && req.grammar) {
    return bad(req.grammar->param, "'" + req.grammar->param +
                                       "' cannot be combined with 'tools' here (unless 'tool_choice' is none)");
  }
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> parse_message_tool_calls(const simdjson::dom::element& m, engine::ChatMessage& out) {
  element calls;
  if (m["tool_calls"].get(calls) != simdjson::SUCCESS || calls.is_null()) return std::nullopt;
  simdjson::dom::array list;
  if (out.role != "assistant" || calls.get_array().get(list) != simdjson::SUCCESS) {
    return bad("messages", "'tool_calls' belongs to assistant messages and is a list");
  }
  for (element c : list) {
    std::string_view id, name, arguments;
    simdjson::dom::object function;
    if (c["function"].get_object().get(function) != simdjson::SUCCESS ||
        function["name"].get_string().get(name) != simdjson::SUCCESS) {
      return bad("messages", "every tool call needs 'function' with a 'name'");
    }
    element args;
    std::string args_text = "{}";
    if (function["arguments"].get(args) == simdjson::SUCCESS && !args.is_null()) {
      if (args.get_string().get(arguments) == simdjson::SUCCESS) {
        args_text = std::string(arguments);  // OpenAI sends the arguments as JSON text
      } else {
        args_text = simdjson::minify(args);
      }
    }
    if (c["id"].get_string().get(id) != simdjson::SUCCESS) id = {};  // optional
    out.tool_calls.push_back({std::string(id), std::string(name), std::move(args_text)});
  }
  return std::nullopt;
}

std::optional<ApiError> parse_generation_options(const simdjson::dom::object& obj, Endpoint endpoint, bool qos_route,
                                                 GenerationRequest& req) {
  if (qos_route) apply_lmdeploy_defaults(obj, endpoint, req);
  if (auto e = parse_logit_bias(obj, req.params)) return e;
  if (auto e = read_bool(obj, "echo", req.echo)) return e;
  if (req.echo && req.params.logprobs) req.params.prompt_logprobs = true;
  if (auto e = read_bool(obj, "skip_special_tokens", req.params.skip_special_tokens)) return e;
  if (auto e = check_stream_options(obj, req)) return e;
  if (auto e = parse_constraints(obj, req)) return e;
  if (auto e = parse_tools(obj, req)) return e;
  return std::nullopt;
}

}  // namespace tiergate::gateway
