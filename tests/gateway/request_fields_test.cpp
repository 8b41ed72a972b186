// gateway/request_fields.*: the README's field table is the code's table, and every row does what
// it says at the parser: its example is accepted where the field is implemented or ignored and
// refused naming the field where refused; null and neutral values of refused fields pass; a field
// no row lists is refused as unknown.
#include "gateway/request_fields.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <fstream>
#include <set>
#include <sstream>

namespace tiergate::gateway {
namespace {

struct RouteCase {
  RouteBit bit;
  Endpoint endpoint;
  bool qos;
  const char* base;  // the smallest valid body of the route
};

const RouteCase kRoutes[] = {
    {kRouteChat, Endpoint::kChat, false, R"({"messages": [{"role": "user", "content": "Hi"}]})"},
    {kRouteCompletion, Endpoint::kCompletion, false, R"({"prompt": "Hi"})"},
    {kRouteChatQos, Endpoint::kChat, true, R"({"messages": "Hi", "user_id": "u"})"},
    {kRouteCompletionQos, Endpoint::kCompletion, true, R"({"prompt": "Hi", "user_id": "u"})"},
    {kRouteInteractive, Endpoint::kInteractive, true, R"({"prompt": "Hi", "user_id": "u"})"},
};

// `base` with the members of `extra` added (extra's win).
std::string merge(std::string_view base, std::string_view extra) {
  simdjson::dom::parser p1, p2;
  simdjson::dom::object a = p1.parse(simdjson::padded_string(base)).get_object().value();
  simdjson::dom::object b = p2.parse(simdjson::padded_string(extra)).get_object().value();
  std::set<std::string_view> overridden;
  for (auto m : b) overridden.insert(m.key);
  std::string out = "{";
  auto add = [&](std::string_view key, simdjson::dom::element v) {
    if (out.size() > 1) out += ", ";
    out += "\"" + std::string(key) + "\": " + simdjson::minify(v);
  };
  for (auto m : a) {
    if (!overridden.count(m.key)) add(m.key, m.value);
  }
  for (auto m : b) add(m.key, m.value);
  return out + "}";
}

std::variant<GenerationRequest, ApiError> parse(const RouteCase& r, std::string_view body) {
  return parse_generation(body, r.endpoint, r.qos);
}

TEST(RequestFields, TheReadmeTableIsTheCodesTable) {
  std::ifstream in(std::string(TIERGATE_SOURCE_DIR) + "/README.md");
  ASSERT_TRUE(in) << "README.md not found";
  std::stringstream text;
  text << in.rdbuf();
  const std::string readme = text.str();
  const std::string begin = "<!-- request-fields:begin -->\n", end = "<!-- request-fields:end -->";
  const auto from = readme.find(begin), to = readme.find(end);
  ASSERT_NE(from, std::string::npos) << "README.md lacks the request-fields markers";
  ASSERT_NE(to, std::string::npos);
  EXPECT_EQ(readme.substr(from + begin.size(), to - from - begin.size()), request_fields_markdown())
      << "README.md's field table is stale; paste this between the markers:\n"
      << request_fields_markdown();
}

TEST(RequestFields, EveryRowDoesWhatItSays) {
  for (const RequestField& f : request_fields()) {
    for (const RouteCase& r : kRoutes) {
      if ((f.routes & r.bit) == 0) continue;
      const std::string body = merge(r.base, f.example);
      const auto parsed = parse(r, body);
      if (f.status == FieldStatus::kRefused) {
        const auto* e = std::get_if<ApiError>(&parsed);
        ASSERT_NE(e, nullptr) << f.name << " on " << body;
        EXPECT_EQ(e->param, f.name) << body;
        EXPECT_EQ(e->code, "unsupported_parameter") << body;
        EXPECT_EQ(e->status, 400);
        // null asks for nothing, and so does the neutral value.
        EXPECT_TRUE(std::holds_alternative<GenerationRequest>(
            parse(r, merge(r.base, "{\"" + std::string(f.name) + "\": null}"))))
            << f.name;
        if (!f.neutral.empty()) {
          EXPECT_TRUE(std::holds_alternative<GenerationRequest>(
              parse(r, merge(r.base, "{\"" + std::string(f.name) + "\": " + std::string(f.neutral) + "}"))))
              << f.name;
        }
      } else {
        const auto* e = std::get_if<ApiError>(&parsed);
        EXPECT_EQ(e, nullptr) << f.name << " on " << body << ": " << (e ? e->message : "");
      }
    }
  }
}

TEST(RequestFields, UnknownFieldsAreRefusedByName) {
  for (const RouteCase& r : kRoutes) {
    const auto parsed = parse(r, merge(r.base, R"({"temprature": 0.5})"));
    const auto* e = std::get_if<ApiError>(&parsed);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->param, "temprature");
    EXPECT_EQ(e->code, "unknown_parameter");
  }
  // Fields of one route are unknown on another.
  EXPECT_EQ(std::get<ApiError>(parse(kRoutes[0], merge(kRoutes[0].base, R"({"echo": true})"))).param, "echo");
  EXPECT_EQ(std::get<ApiError>(parse(kRoutes[4], merge(kRoutes[4].base, R"({"n": 2})"))).code, "unknown_parameter");
}

TEST(RequestFields, EveryFieldHasOneRowPerRoute) {
  for (const RequestField& f : request_fields()) {
    for (const RouteCase& r : kRoutes) {
      if ((f.routes & r.bit) != 0) {
        EXPECT_EQ(find_request_field(f.name, r.bit), &f) << f.name << " listed twice";
      }
    }
    EXPECT_FALSE(f.note.empty()) << f.name;
    EXPECT_FALSE(f.example.empty()) << f.name;
  }
}

TEST(RequestFields, LmdeployDefaultsApplyOnTheQosRoutesOnly) {
  const auto chat = std::get<GenerationRequest>(parse(kRoutes[0], kRoutes[0].base));
  EXPECT_FLOAT_EQ(chat.params.temperature, 1.0f);
  EXPECT_EQ(chat.params.top_k, 0);
  const auto chat_qos = std::get<GenerationRequest>(parse(kRoutes[2], kRoutes[2].base));
  EXPECT_FLOAT_EQ(chat_qos.params.temperature, 0.7f);
  EXPECT_FLOAT_EQ(chat_qos.params.top_p, 1.0f);
  EXPECT_EQ(chat_qos.params.top_k, 40);
  const auto completion_qos = std::get<GenerationRequest>(parse(kRoutes[3], kRoutes[3].base));
  EXPECT_EQ(completion_qos.params.max_tokens, 16);
  EXPECT_TRUE(completion_qos.max_tokens_given);
  const auto interactive = std::get<GenerationRequest>(parse(kRoutes[4], kRoutes[4].base));
  EXPECT_FLOAT_EQ(interactive.params.temperature, 0.8f);
  EXPECT_FLOAT_EQ(interactive.params.top_p, 0.8f);
  EXPECT_EQ(interactive.params.top_k, 40);
  // An explicit value wins.
  const auto explicit_qos =
      std::get<GenerationRequest>(parse(kRoutes[4], merge(kRoutes[4].base, R"({"temperature": 0, "top_k": 3})")));
  EXPECT_FLOAT_EQ(explicit_qos.params.temperature, 0.0f);
  EXPECT_EQ(explicit_qos.params.top_k, 3);
}

TEST(RequestFields, StopTrueEndsAnInteractiveSessionAndIsRefusedElsewhere) {
  EXPECT_TRUE(std::get<GenerationRequest>(parse(kRoutes[4], merge(kRoutes[4].base, R"({"stop": true})"))).end_session);
  EXPECT_FALSE(std::get<GenerationRequest>(parse(kRoutes[4], merge(kRoutes[4].base, R"({"stop": false})"))).end_session);
  EXPECT_EQ(std::get<ApiError>(parse(kRoutes[2], merge(kRoutes[2].base, R"({"stop": true})"))).param, "stop");
}

TEST(RequestFields, ExtensionFieldsParse) {
  const auto r = std::get<GenerationRequest>(parse(
      kRoutes[1], merge(kRoutes[1].base, R"({"logit_bias": {"5": -100, "17": 2.5}, "echo": true, "logprobs": 1,
                                            "skip_special_tokens": false})")));
  EXPECT_EQ(r.params.logit_bias, (std::vector<std::pair<std::int32_t, float>>{{5, -100.0f}, {17, 2.5f}}));
  EXPECT_TRUE(r.echo && r.params.prompt_logprobs);
  EXPECT_FALSE(r.params.skip_special_tokens);
  for (const char* bias : {R"({"x": 1})", R"({"-1": 1})", R"({"3": 101})", R"({"3": "1"})", R"([1])"}) {
    EXPECT_EQ(std::get<ApiError>(parse(kRoutes[1], merge(kRoutes[1].base, std::string("{\"logit_bias\": ") + bias + "}"))).param,
              "logit_bias")
        << bias;
  }
  EXPECT_EQ(std::get<ApiError>(parse(kRoutes[0], merge(kRoutes[0].base, R"({"stream_options": {"include_usage": true}})"))).param,
            "stream_options");  // without stream
  EXPECT_EQ(std::get<ApiError>(parse(kRoutes[0], merge(kRoutes[0].base,
                                                       R"({"stream": true, "stream_options": {"x": true}})"))).param,
            "stream_options");
}

TEST(RequestFields, OutputConstraintsParseToTheirSpec) {
  using Kind = engine::GrammarSpec::Kind;
  auto spec = [](std::string_view extra) {
    return std::get<GenerationRequest>(parse(kRoutes[0], merge(kRoutes[0].base, extra))).grammar;
  };
  EXPECT_FALSE(spec(R"({"response_format": {"type": "text"}})"));
  EXPECT_EQ(spec(R"({"response_format": {"type": "json_object"}})")->kind, Kind::kJsonValue);
  const auto schema = spec(R"({"response_format": {"type": "json_schema", "json_schema": {"name": "n",
      "schema": {"type": "object", "properties": {"a": {"type": "string"}}}, "strict": true}}})");
  EXPECT_EQ(schema->kind, Kind::kJsonSchema);
  EXPECT_EQ(schema->source, R"({"type":"object","properties":{"a":{"type":"string"}}})");
  EXPECT_TRUE(schema->strict);
  EXPECT_EQ(spec(R"({"guided_regex": "a+"})")->kind, Kind::kRegex);
  EXPECT_EQ(spec(R"({"guided_choice": ["x", "y"]})")->source, R"(["x","y"])");
  EXPECT_EQ(spec(R"({"guided_json": "{\"type\": \"string\"}"})")->source, R"({"type":"string"})");
  auto error = [](std::string_view extra) {
    return std::get<ApiError>(parse(kRoutes[0], merge(kRoutes[0].base, extra))).param;
  };
  EXPECT_EQ(error(R"({"response_format": {"type": "xml"}})"), "response_format");
  EXPECT_EQ(error(R"({"response_format": {"type": "json_schema"}})"), "response_format");
  EXPECT_EQ(error(R"({"guided_choice": []})"), "guided_choice");
  EXPECT_EQ(error(R"({"guided_regex": "a", "guided_choice": ["a"]})"), "guided_choice");
  EXPECT_EQ(error(R"({"tool_choice": "auto"})"), "tool_choice");
  EXPECT_EQ(error(R"({"tools": [{"type": "function", "function": {"name": "a b"}}]})"), "tools");
  EXPECT_EQ(error(R"({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice":
      {"type": "function", "function": {"name": "g"}}})"),
            "tool_choice");
  const auto tools = std::get<GenerationRequest>(parse(kRoutes[0], merge(kRoutes[0].base, R"({"tools": [{"type":
      "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
      "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": false})")));
  ASSERT_EQ(tools.tools.size(), 1u);
  EXPECT_EQ(tools.tools[0].parameters, R"({"type":"object"})");
  EXPECT_EQ(tools.tool_choice.mode, engine::ToolChoice::Mode::kNamed);
  EXPECT_FALSE(tools.parallel_tool_calls);
}

}  // namespace
}  // namespace tiergate::gateway
