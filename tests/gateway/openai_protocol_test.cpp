// gateway/openai_protocol.* and gateway/api_keys.*: request parsing names the bad parameter,
// LMDeploy-QoS bodies are accepted as sent, responses have the OpenAI shape, keys hash and match.
#include "gateway/openai_protocol.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "engine/unicode.h"
#include "gateway/api_keys.h"
#include "qos/config_writer.h"
#include "tests/temp_file.h"

namespace tiergate::gateway {
namespace {

std::string error_param(std::string_view body, Endpoint e = Endpoint::kChat, bool qos = false) {
  auto r = parse_generation(body, e, qos);
  if (auto* err = std::get_if<ApiError>(&r)) return err->param.empty() ? "<none>" : err->param;
  return "<ok>";
}

TEST(OpenAiProtocol, ParsesEverySamplingParameter) {
  auto r = parse_generation(R"({"model": "m", "messages": [{"role": "system", "content": "S"},
      {"role": "user", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]}],
      "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.1, "repetition_penalty": 1.1,
      "presence_penalty": 0.2, "frequency_penalty": 0.3, "seed": 5, "stop": ["x", "y"], "n": 2, "ignore_eos": true,
      "logprobs": true, "top_logprobs": 3, "stream": true, "stream_options": {"include_usage": true}, "user": "u"})",
                            Endpoint::kChat, false);
  ASSERT_TRUE(std::holds_alternative<GenerationRequest>(r));
  const auto& g = std::get<GenerationRequest>(r);
  EXPECT_EQ(g.messages.size(), 2u);
  EXPECT_EQ(g.messages[1].content, "AB");
  EXPECT_EQ(g.params.max_tokens, 7);
  EXPECT_FLOAT_EQ(g.params.temperature, 0.5f);
  EXPECT_EQ(g.params.top_k, 40);
  EXPECT_EQ(g.params.seed, 5u);
  EXPECT_EQ(g.params.stop, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(g.params.n, 2);
  EXPECT_TRUE(g.params.ignore_eos && g.params.logprobs && g.stream && g.include_usage);
  EXPECT_EQ(g.params.top_logprobs, 3);
  EXPECT_EQ(g.user, "u");
}

TEST(OpenAiProtocol, AcceptsLmdeployQosBodies) {
  auto r = parse_generation(R"({"messages": "Hello", "user_id": "user_id0", "request_output_len": 12, "stop": false,
      "session_id": -1, "interactive_mode": false, "ignore_eos": false, "top_k": 40})",
                            Endpoint::kChat, true);
  ASSERT_TRUE(std::holds_alternative<GenerationRequest>(r));
  const auto& g = std::get<GenerationRequest>(r);
  EXPECT_EQ(g.messages[0].content, "Hello");
  EXPECT_EQ(g.user, "user_id0");
  EXPECT_EQ(g.params.max_tokens, 12);
  EXPECT_TRUE(g.params.stop.empty());
}

// Issue 11, hole 9: a session's turn has one answer; n > 1 there used to finish the response at the
// first choice and let the next choices answer the connection's next request. LMDeploy's
// interactive body has no n, so the route refuses the field by name, whatever its value.
TEST(OpenAiProtocol, InteractiveTurnsTakeNoN) {
  EXPECT_EQ(error_param(R"({"prompt": "hi", "session_id": 1, "n": 2})", Endpoint::kInteractive, true), "n");
  EXPECT_EQ(error_param(R"({"prompt": "hi", "session_id": 1, "n": 1})", Endpoint::kInteractive, true), "n");
  EXPECT_EQ(error_param(R"({"prompt": "hi", "session_id": 1})", Endpoint::kInteractive, true), "<ok>");
}

// Issue 11's hostile table: wrong types are refused, never silently ignored; numbers out of range
// are refused without an undefined conversion.
TEST(OpenAiProtocol, WrongTypesAndHugeNumbersNameTheParameter) {
  const std::string m = R"("messages": [{"role": "user", "content": "x"}])";
  EXPECT_EQ(error_param("{" + m + R"(, "stream": "yes"})"), "stream");
  EXPECT_EQ(error_param("{" + m + R"(, "ignore_eos": 1})"), "ignore_eos");
  EXPECT_EQ(error_param("{" + m + R"(, "model": 7})"), "model");
  EXPECT_EQ(error_param("{" + m + R"(, "stream_options": [1]})"), "stream_options");
  EXPECT_EQ(error_param("{" + m + R"(, "stream_options": {"include_usage": "y"}})"), "stream_options");
  EXPECT_EQ(error_param("{" + m + R"(, "seed": 1e30})"), "seed");
  EXPECT_EQ(error_param("{" + m + R"(, "seed": 2.5})"), "seed");
  EXPECT_EQ(error_param("{" + m + R"(, "temperature": 1e300})"), "<ok>");  // clamped here, refused by validate()
  EXPECT_EQ(error_param(R"({"prompt": "x", "session_id": 18446744073709551615})", Endpoint::kInteractive, true),
            "session_id");
  auto seed_of = [&](const std::string& v) {
    auto r = parse_generation("{" + m + R"(, "seed": )" + v + "}", Endpoint::kChat, false);
    return *std::get<GenerationRequest>(r).params.seed;
  };
  EXPECT_EQ(seed_of("18446744073709551615"), 18446744073709551615ull);
  EXPECT_EQ(seed_of("-1"), 18446744073709551615ull);
  EXPECT_EQ(seed_of("7.0"), 7u);
}

TEST(OpenAiProtocol, ErrorsNameTheParameter) {
  EXPECT_EQ(error_param("{"), "<none>");
  EXPECT_EQ(error_param("[]"), "<none>");
  EXPECT_EQ(error_param(R"({})"), "messages");
  EXPECT_EQ(error_param(R"({"messages": "plain"})"), "messages");  // a string only on *_qos routes
  EXPECT_EQ(error_param(R"({"messages": [{"role": "wizard", "content": "x"}]})"), "messages");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})"), "max_tokens");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5})"), "max_tokens");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})"), "temperature");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": "x"}], "stop": 3})"), "stop");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})"), "top_logprobs");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": "x"}], "user": 7})"), "user");
  EXPECT_EQ(error_param(R"({"prompt": ["a", "b"]})", Endpoint::kCompletion), "prompt");
  EXPECT_EQ(error_param(R"({"prompt": "a", "logprobs": 99})", Endpoint::kCompletion), "logprobs");
}

// ---- request bodies built from each route's schema ----
//
// (The random choices below use weightedElement: rapidcheck scales inRange with the case's size.)
// A body holds a random subset of the route's real keys. Each value is either valid for its key
// (drawn from the range the API documents, so it must parse to exactly that value) or, in a
// perturbed body, any JSON value of any type. Then: a body of valid values parses and every field
// reads back; a perturbed body parses (what it holds for the untouched keys reads back) or fails
// with a 400 that names a perturbed key, or the required key when it was left out; a body cut
// short fails as invalid JSON, naming no key. No case dies at the JSON parser by accident.

struct Route {
  Endpoint endpoint;
  bool qos;
  const char* name;
  std::vector<std::string> keys;  // besides the required "messages" or "prompt"
};

const std::vector<Route>& routes() {
  static const std::vector<Route> all = {
      {Endpoint::kChat, false, "/v1/chat/completions",
       {"model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
        "presence_penalty", "frequency_penalty", "seed", "stop", "n", "ignore_eos", "logprobs", "top_logprobs",
        "stream", "stream_options", "user"}},
      {Endpoint::kCompletion, false, "/v1/completions",
       {"model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
        "frequency_penalty", "seed", "stop", "n", "ignore_eos", "logprobs", "stream", "stream_options", "user"}},
      // LMDeploy 0.5.3's ChatCompletionRequestQos and CompletionRequestQos, and GenerateRequestQos.
      {Endpoint::kChat, true, "/v1/chat/completions_qos",
       {"model", "max_tokens", "request_output_len", "temperature", "top_p", "top_k", "repetition_penalty",
        "presence_penalty", "frequency_penalty", "stop", "n", "ignore_eos", "logprobs", "top_logprobs", "stream",
        "user", "user_id", "session_id"}},
      {Endpoint::kCompletion, true, "/v1/completions_qos",
       {"model", "max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "presence_penalty",
        "frequency_penalty", "stop", "n", "ignore_eos", "logprobs", "stream", "user", "user_id", "session_id"}},
      {Endpoint::kInteractive, true, "/v1/chat/interactive_qos",
       {"session_id", "interactive_mode", "stream", "stop", "request_output_len", "top_p", "top_k", "temperature",
        "repetition_penalty", "ignore_eos", "user_id"}},
  };
  return all;
}

// Text of any kind, escapes and non-ASCII included, always well-formed UTF-8.
rc::Gen<std::string> any_text() {
  return rc::gen::map(rc::gen::container<std::vector<std::string>>(
                          rc::gen::element<std::string>("a", "Z", " ", "\"", "\\", "/", "\n", "\t", "\x01", "é",
                                                        "中", "😀", "user", "{", "]", "null", "0")),
                      [](const std::vector<std::string>& pieces) {
                        std::string out;
                        for (const auto& p : pieces) out += p;
                        return out;
                      });
}

std::string json_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out + "]";
}

// Any JSON value of any type, nested up to `depth`.
rc::Gen<std::string> any_json(int depth) {
  const auto scalar = rc::gen::oneOf(
      rc::gen::element<std::string>("null", "true", "false", "0", "-1", "1", "2.5", "-0.0", "1e308", "-1e-300",
                                    "7.0", "18446744073709551615", "-9223372036854775808", "1E2"),
      rc::gen::map(rc::gen::arbitrary<std::int64_t>(), [](std::int64_t v) { return std::to_string(v); }),
      rc::gen::map(any_text(), [](const std::string& t) { return qos::json_string(t); }));
  if (depth == 0) return scalar;
  const auto list = rc::gen::map(rc::gen::container<std::vector<std::string>>(any_json(depth - 1)), json_list);
  const auto object = rc::gen::map(
      rc::gen::container<std::vector<std::pair<std::string, std::string>>>(rc::gen::pair(
          rc::gen::element<std::string>("role", "content", "type", "text", "include_usage", "x"), any_json(depth - 1))),
      [](const std::vector<std::pair<std::string, std::string>>& members) {
        std::string out = "{";
        for (std::size_t i = 0; i < members.size(); ++i) {
          out += (i ? ", " : "") + qos::json_string(members[i].first) + ": " + members[i].second;
        }
        return out + "}";
      });
  return rc::gen::weightedOneOf<std::string>({{3, scalar}, {2, list}, {1, object}});
}

// A body under construction: its members, and the checks its valid values must pass once parsed,
// each with the keys whose values it reads.
struct Body {
  std::vector<std::pair<std::string, std::string>> members;
  std::set<std::string> perturbed;
  std::vector<std::pair<std::vector<std::string>, std::function<bool(const GenerationRequest&)>>> checks;

  void expect(std::vector<std::string> keys, std::function<bool(const GenerationRequest&)> check) {
    checks.emplace_back(std::move(keys), std::move(check));
  }
  bool has(const std::string& key) const {
    return std::any_of(members.begin(), members.end(), [&](const auto& m) { return m.first == key; });
  }
  std::string text() const {
    std::string out = "{";
    for (std::size_t i = 0; i < members.size(); ++i) {
      out += (i ? ", " : "") + qos::json_string(members[i].first) + ": " + members[i].second;
    }
    return out + "}";
  }
};

// A valid value for `key` on `route`, with the check of what it must parse to.
void add_valid(Body& b, const Route& route, const std::string& key) {
  const bool chat = route.endpoint == Endpoint::kChat;
  std::string value;
  if (key == "messages") {
    if (route.qos && *rc::gen::arbitrary<bool>()) {  // LMDeploy's bare string
      const std::string text = *any_text();
      value = qos::json_string(text);
      b.expect({key}, [text](const GenerationRequest& r) {
        return r.messages.size() == 1 && r.messages[0].role == "user" && r.messages[0].content == text;
      });
    } else {
      std::vector<std::string> items;
      std::vector<engine::ChatMessage> want;
      for (int i = *rc::gen::inRange(1, 5); i > 0; --i) {
        const std::string role = *rc::gen::element<std::string>("system", "user", "assistant", "tool", "developer");
        std::string content, json;
        if (*rc::gen::arbitrary<bool>()) {
          content = *any_text();
          json = qos::json_string(content);
        } else {
          std::vector<std::string> parts;
          for (int k = *rc::gen::inRange(0, 3); k > 0; --k) {
            const std::string part = *any_text();
            content += part;
            parts.push_back("{\"type\": \"text\", \"text\": " + qos::json_string(part) + "}");
          }
          json = json_list(parts);
        }
        items.push_back("{\"role\": " + qos::json_string(role) + ", \"content\": " + json + "}");
        want.push_back({role == "developer" ? "system" : role, content});
      }
      value = json_list(items);
      b.expect({key}, [want](const GenerationRequest& r) {
        if (r.messages.size() != want.size()) return false;
        for (std::size_t i = 0; i < want.size(); ++i) {
          if (r.messages[i].role != want[i].role || r.messages[i].content != want[i].content) return false;
        }
        return true;
      });
    }
  } else if (key == "prompt") {
    const std::string text = *any_text();
    const bool listed = route.endpoint == Endpoint::kCompletion && *rc::gen::arbitrary<bool>();
    value = listed ? json_list({qos::json_string(text)}) : qos::json_string(text);
    if (route.endpoint == Endpoint::kInteractive) {
      b.expect({key}, [text](const GenerationRequest& r) {
        return r.messages.size() == 1 && r.messages[0].content == text;
      });
    } else {
      b.expect({key}, [text](const GenerationRequest& r) { return r.prompt == text; });
    }
  } else if (key == "model" || key == "user" || key == "user_id") {
    const std::string text = *any_text();
    value = qos::json_string(text);
    if (key == "model") b.expect({key}, [text](const GenerationRequest& r) { return r.model == text; });
    // user_id wins over user when both are sent.
    if (key == "user_id") b.expect({"user", key}, [text](const GenerationRequest& r) { return r.user == text; });
    if (key == "user") {
      b.expect({"user", "user_id"}, [text, &b](const GenerationRequest& r) { return b.has("user_id") || r.user == text; });
    }
  } else if (key == "max_tokens" || key == "max_completion_tokens" || key == "request_output_len") {
    const auto n = *rc::gen::inRange<std::int64_t>(1, 100000);
    value = std::to_string(n);
    // The last of these that a body holds wins (max_tokens, max_completion_tokens, request_output_len).
    b.checks.erase(std::remove_if(b.checks.begin(), b.checks.end(),
                                  [](const auto& c) { return c.first.front() == "max_tokens"; }),
                   b.checks.end());
    b.expect({"max_tokens", "max_completion_tokens", "request_output_len"}, [n](const GenerationRequest& r) {
      return r.params.max_tokens == n && r.max_tokens_given;
    });
  } else if (key == "temperature" || key == "top_p" || key == "min_p" || key == "repetition_penalty" ||
             key == "presence_penalty" || key == "frequency_penalty") {
    const auto ranges = std::map<std::string, std::vector<std::string>>{
        {"temperature", {"0", "0.5", "0.7", "1", "1.5", "2"}},
        {"top_p", {"0.1", "0.5", "0.95", "1"}},
        {"min_p", {"0", "0.05", "0.5", "1"}},
        {"repetition_penalty", {"0.5", "1", "1.3", "2"}},
        {"presence_penalty", {"-2", "-0.5", "0", "0.3", "2"}},
        {"frequency_penalty", {"-2", "-0.5", "0", "0.3", "2"}}};
    value = *rc::gen::elementOf(ranges.at(key));
    const float want = static_cast<float>(std::stod(value));
    b.expect({key}, [key, want](const GenerationRequest& r) {
      const engine::SamplingParams& p = r.params;
      const float got = key == "temperature"          ? p.temperature
                        : key == "top_p"              ? p.top_p
                        : key == "min_p"              ? p.min_p
                        : key == "repetition_penalty" ? p.repetition_penalty
                        : key == "presence_penalty"   ? p.presence_penalty
                                                      : p.frequency_penalty;
      return got == want;
    });
  } else if (key == "top_k" || key == "n" || key == "seed" || key == "session_id") {
    const auto n = key == "top_k"        ? *rc::gen::element<std::int64_t>(-1, 0, 1, 40, 100)
                   : key == "n"          ? *rc::gen::inRange<std::int64_t>(1, 5)
                   : key == "session_id" ? *rc::gen::inRange<std::int64_t>(-1, 1000)
                                         : *rc::gen::inRange<std::int64_t>(0, std::int64_t{1} << 40);
    value = std::to_string(n);
    b.expect({key}, [key, n, route](const GenerationRequest& r) {
      if (key == "top_k") return r.params.top_k == n;
      if (key == "n") return r.params.n == n;
      if (key == "seed") return r.params.seed == static_cast<std::uint64_t>(n);
      return route.endpoint != Endpoint::kInteractive || r.session_id == n;
    });
  } else if (key == "stop") {
    std::vector<std::string> want;
    const int shape = route.endpoint == Endpoint::kInteractive ? 0 : *rc::gen::inRange(route.qos ? 0 : 1, 4);
    if (shape == 0) {
      value = "false";  // LMDeploy sends a boolean (true on interactive_qos ends the session)
    } else if (shape == 1) {
      value = "null";
    } else if (shape == 2) {
      want.push_back(*rc::gen::nonEmpty(any_text()));
      value = qos::json_string(want[0]);
    } else {
      std::vector<std::string> items;
      for (int i = *rc::gen::inRange(0, 4); i > 0; --i) {
        want.push_back(*rc::gen::nonEmpty(any_text()));
        items.push_back(qos::json_string(want.back()));
      }
      value = json_list(items);
    }
    b.expect({key}, [want](const GenerationRequest& r) { return r.params.stop == want; });
  } else if (key == "ignore_eos" || key == "stream" || key == "interactive_mode") {
    const bool flag = *rc::gen::arbitrary<bool>();
    value = flag ? "true" : "false";
    b.expect({key}, [key, flag](const GenerationRequest& r) {
      return (key == "ignore_eos" ? r.params.ignore_eos : key == "stream" ? r.stream : r.interactive_mode) == flag;
    });
  } else if (key == "stream_options") {  // only with stream: true (OpenAI and vLLM refuse it otherwise)
    const bool flag = *rc::gen::arbitrary<bool>();
    value = std::string("{\"include_usage\": ") + (flag ? "true" : "false") + "}";
    for (auto& m : b.members) {
      if (m.first == "stream" && !b.perturbed.count("stream")) m.second = "true";
    }
    if (!b.has("stream")) b.members.emplace_back("stream", "true");
    b.checks.erase(std::remove_if(b.checks.begin(), b.checks.end(),
                                  [](const auto& c) { return c.first.front() == "stream"; }),
                   b.checks.end());
    b.expect({"stream", key}, [flag](const GenerationRequest& r) { return r.stream && r.include_usage == flag; });
  } else if (key == "logprobs") {
    if (chat) {  // a boolean; top_logprobs (drawn after it) may need it true
      const bool flag = *rc::gen::arbitrary<bool>();
      value = flag ? "true" : "false";
      b.expect({key}, [flag](const GenerationRequest& r) { return r.params.logprobs == flag; });
    } else {  // completions: how many alternatives
      const auto n = *rc::gen::inRange(0, 21);
      value = std::to_string(n);
      b.expect({key}, [n](const GenerationRequest& r) { return r.params.logprobs && r.params.top_logprobs == n; });
    }
  } else if (key == "top_logprobs") {
    const auto n = *rc::gen::inRange(0, 21);
    value = std::to_string(n);
    for (auto& m : b.members) {
      if (m.first == "logprobs" && !b.perturbed.count("logprobs")) m.second = "true";
    }
    if (!b.has("logprobs")) b.members.emplace_back("logprobs", "true");
    b.checks.erase(std::remove_if(b.checks.begin(), b.checks.end(),
                                  [](const auto& c) { return c.first.front() == "logprobs"; }),
                   b.checks.end());
    b.expect({"logprobs", key}, [n](const GenerationRequest& r) {
      return r.params.logprobs && r.params.top_logprobs == n;
    });
  } else {
    RC_FAIL("no valid values for key " + key);
  }
  b.members.emplace_back(key, value);
}

RC_GTEST_PROP(OpenAiProtocolProperty, SchemaBodiesParseToTheirValuesOrNameTheBadField, ()) {
  const Route route = *rc::gen::elementOf(routes());
  const std::string required = route.endpoint == Endpoint::kChat ? "messages" : "prompt";
  const bool perturbing = *rc::gen::weightedElement<bool>({{2, true}, {1, false}});
  Body b;
  std::vector<std::string> keys = route.keys;
  keys.insert(keys.begin() + *rc::gen::inRange<std::size_t>(0, keys.size() + 1), required);
  const bool required_left_out = *rc::gen::weightedElement<bool>({{1, true}, {9, false}});
  std::vector<std::string> included;
  for (const std::string& key : keys) {
    if (key == required ? !required_left_out : *rc::gen::arbitrary<bool>()) included.push_back(key);
  }
  // Mostly one perturbed key, so that the parser's first check does not always hide the others.
  std::set<std::string> perturbed;
  if (perturbing && !included.empty()) {
    perturbed.insert(*rc::gen::elementOf(included));
    if (*rc::gen::weightedElement<bool>({{1, true}, {2, false}})) {
      for (const std::string& key : included) {
        if (*rc::gen::weightedElement<bool>({{1, true}, {3, false}})) perturbed.insert(key);
      }
    }
  }
  for (const std::string& key : included) {
    if (b.has(key)) continue;  // logprobs, added with top_logprobs
    if (perturbed.count(key)) {
      b.perturbed.insert(key);
      b.members.emplace_back(key, *any_json(2));
    } else {
      add_valid(b, route, key);
    }
  }
  const std::string body = b.text();
  RC_TAG(route.name);
  const auto r = parse_generation(body, route.endpoint, route.qos);
  if (const auto* e = std::get_if<ApiError>(&r)) {
    RC_TAG(required_left_out ? "refused, required key left out" : "refused");
    RC_ASSERT(e->status == 400);
    RC_ASSERT(e->type == "invalid_request_error");
    RC_ASSERT(!e->message.empty());
    // A chat's top_logprobs is refused when the perturbed logprobs did not read as true, and
    // stream_options when the perturbed stream did not.
    const bool blamed = b.perturbed.count(e->param) || (e->param == required && required_left_out) ||
                        (e->param == "top_logprobs" && b.perturbed.count("logprobs")) ||
                        (e->param == "stream_options" && b.perturbed.count("stream"));
    RC_ASSERT(blamed);
    simdjson::dom::parser parser;
    simdjson::dom::element error;
    RC_ASSERT(parser.parse(simdjson::padded_string(e->to_json()))["error"].get(error) == simdjson::SUCCESS);
    std::string_view param;
    RC_ASSERT(error["param"].get_string().get(param) == simdjson::SUCCESS && param == e->param);
  } else {
    RC_TAG(b.perturbed.empty() ? "parsed" : "parsed despite perturbed values");
    RC_ASSERT(!required_left_out);
    const GenerationRequest& g = std::get<GenerationRequest>(r);
    RC_ASSERT(g.endpoint == route.endpoint);
    for (const auto& [depends_on, check] : b.checks) {
      const bool untouched = std::none_of(depends_on.begin(), depends_on.end(),
                                          [&](const std::string& k) { return b.perturbed.count(k) > 0; });
      if (untouched) RC_ASSERT(check(g));
    }
  }
  // The same body cut short is not JSON: a 400 that names no key.
  const auto cut = *rc::gen::inRange<std::size_t>(0, body.size());
  const auto truncated = parse_generation(body.substr(0, cut), route.endpoint, route.qos);
  const auto* e = std::get_if<ApiError>(&truncated);
  RC_ASSERT(e != nullptr);
  RC_ASSERT(e->status == 400 && e->param.empty());
}

// The error object's fields as simdjson reads them (simdjson rejects ill-formed UTF-8); "<invalid>"
// when the body is not valid JSON, "<null>" for a null field.
std::map<std::string, std::string> error_fields(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::object error;
  if (parser.parse(simdjson::padded_string(body))["error"].get_object().get(error) != simdjson::SUCCESS) {
    return {{"<invalid>", body}};
  }
  std::map<std::string, std::string> fields;
  for (auto [key, value] : error) {
    std::string_view text;
    fields[std::string(key)] = value.is_null() ? "<null>"
                               : value.get_string().get(text) == simdjson::SUCCESS ? std::string(text)
                                                                                   : "<not a string>";
  }
  return fields;
}

TEST(OpenAiProtocol, ErrorJsonHasTheOpenAiShape) {
  const ApiError e{429, "queue \"full\"\n", "rate_limit_error", "", "queue_full"};
  const std::map<std::string, std::string> want{
      {"message", "queue \"full\"\n"}, {"type", "rate_limit_error"}, {"param", "<null>"}, {"code", "queue_full"}};
  EXPECT_EQ(error_fields(e.to_json()), want);
}

// Issue 23, hole 4: a 404 quoted the raw path, and `GET /v1/\xff\xfe` gave a body no JSON parser
// accepts. Ill-formed bytes come out as U+FFFD, one per byte, as Python's errors="replace" does.
TEST(OpenAiProtocol, ErrorJsonRepairsBytesThatAreNotUtf8) {
  const ApiError e{404, "no route /v1/\xff\xfe", "invalid_request_error", "p\xc3", "not_found"};
  const std::map<std::string, std::string> want{{"message", "no route /v1/\uFFFD\uFFFD"},
                                                {"type", "invalid_request_error"},
                                                {"param", "p\uFFFD"},
                                                {"code", "not_found"}};
  EXPECT_EQ(error_fields(e.to_json()), want);
  // Well-formed text beyond ASCII passes through unchanged.
  EXPECT_EQ(error_fields(ApiError{404, "no route /caf\u00e9/\U0001F600", "t", "", ""}.to_json())["message"],
            "no route /caf\u00e9/\U0001F600");
}

RC_GTEST_PROP(OpenAiProtocol, ErrorJsonIsValidJsonWhateverBytesItQuotes,
              (const std::string& message, const std::string& param, const std::string& code)) {
  const std::string body = ApiError{400, message, "invalid_request_error", param, code}.to_json();
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  RC_ASSERT(parser.parse(simdjson::padded_string(body)).get(root) == simdjson::SUCCESS);
  // Each field is its text repaired (valid text comes out as it was); an empty param or code is null.
  const auto fields = error_fields(body);
  RC_ASSERT(fields.at("message") == engine::to_valid_utf8(message));
  RC_ASSERT(fields.at("param") == (param.empty() ? std::string("<null>") : engine::to_valid_utf8(param)));
  RC_ASSERT(fields.at("code") == (code.empty() ? std::string("<null>") : engine::to_valid_utf8(code)));
}

// The problem ApiKeyStore::parse reports for `text`, or "<accepted>".
std::string key_file_problem(const std::string& text) {
  try {
    ApiKeyStore::parse(text, "k.json");
  } catch (const ApiKeyError& e) {
    return e.what();
  }
  return "<accepted>";
}

// Issue 23, hole 5: a key bound to no user, or to the user "", acted as user "" and shared that
// user's sessions with every other such key. Only `keys add` refused them; the file is refused now.
TEST(ApiKeys, AFileBindingAKeyToNoUserOrTheEmptyUserIsRefused) {
  const std::string hash = "\"sha256\": \"" + std::string(64, 'a') + "\"";
  EXPECT_EQ(key_file_problem(R"({"keys": [{)" + hash + R"(, "users": []}]})"),
            "k.json: $.keys[0].users is empty: list the user ids the key may act for, or \"*\" for any user");
  EXPECT_EQ(key_file_problem(R"({"keys": [{)" + hash + R"(, "users": ["u"]}, {)" + hash + R"(, "users": ["a", ""]}]})"),
            "k.json: $.keys[1].users[1] is the empty user id: remove it or name a user");
  EXPECT_EQ(key_file_problem(R"({"keys": [{)" + hash + R"(, "users": ["a", "b"]}, {)" + hash + R"(, "users": "*"}]})"),
            "<accepted>");
}

// Any list of user ids: the file is accepted exactly when the list is non-empty and holds no "",
// and then the key acts for those users and no other.
// Any list of user ids (some of them ""): the file is accepted exactly when the list is non-empty
// and holds no "", and then the key acts for those users and no other.
RC_GTEST_PROP(ApiKeys, AKeyFileIsAcceptedExactlyWhenEveryKeyHasAUser, ()) {
  const auto users = *rc::gen::container<std::vector<std::string>>(
      rc::gen::container<std::string>(rc::gen::inRange('a', 'd')));
  std::string list;
  for (const std::string& u : users) list += (list.empty() ? "" : ", ") + qos::json_string(u);
  const std::string text = R"({"keys": [{"sha256": ")" + sha256_hex("k") + R"(", "users": [)" + list + "]}]}";
  const bool acceptable =
      !users.empty() && std::none_of(users.begin(), users.end(), [](const std::string& u) { return u.empty(); });
  RC_ASSERT((key_file_problem(text) == "<accepted>") == acceptable);
  if (!acceptable) return;
  const auto key = ApiKeyStore::parse(text, "k.json")->authenticate("k");
  RC_ASSERT(key.has_value());
  RC_ASSERT(key->users == users);
  RC_ASSERT(!key->may_act_for(""));
}

TEST(ApiKeys, HashesAndMatchesInConstantTime) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const testing::TempFile file("api_keys.json", R"({"keys": []})");
  const std::string& path = file.path();
  const std::string alice = ApiKeyStore::add_key(path, "alice", {"a1", "a2"}, false, false);
  const std::string saas = ApiKeyStore::add_key(path, "saas", {}, true, true);
  const auto store = ApiKeyStore::load(path);
  ASSERT_EQ(store->size(), 2u);
  const auto a = store->authenticate(alice);
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->may_act_for("a2"));
  EXPECT_FALSE(a->may_act_for("b"));
  EXPECT_FALSE(a->admin);
  const auto s = store->authenticate(saas);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->may_act_for("anyone") && s->admin);
  EXPECT_FALSE(store->authenticate(alice + "x"));
  EXPECT_FALSE(store->authenticate(""));
}

}  // namespace
}  // namespace tiergate::gateway
