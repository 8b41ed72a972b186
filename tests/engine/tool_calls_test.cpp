// engine/tool_calls.*: Hermes-style calls parsed out of a finished answer and out of the same text
// streamed in arbitrary pieces (the two agree, whatever the split), malformed calls kept as content,
// and the grammar tool_choice asks for (none/auto leave the text free).
#include "engine/tool_calls.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <map>

namespace tiergate::engine {
namespace {

const std::string kWeather =
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": [1, 2]}}\n</tool_call>";
const std::string kNoop = "<tool_call>\n{\"name\": \"noop\", \"arguments\": {\"s\": \"a } in \\\" a string\"}}\n</tool_call>";

TEST(ToolCalls, ParsesCallsAndKeepsTheTextAroundThem) {
  const ParsedToolCalls p = parse_tool_calls(hermes_tool_call_format(), "Let me look.\n" + kWeather + "\n" + kNoop, "call_");
  EXPECT_EQ(p.content, "Let me look.");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].id, "call_0");
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(p.calls[0].arguments, "{\"city\": \"Paris\", \"days\": [1, 2]}");
  EXPECT_EQ(p.calls[1].id, "call_1");
  EXPECT_EQ(p.calls[1].name, "noop");
  EXPECT_EQ(p.calls[1].arguments, "{\"s\": \"a } in \\\" a string\"}");
  const ParsedToolCalls none = parse_tool_calls(hermes_tool_call_format(), "No tools needed: 1 < 2.", "c");
  EXPECT_TRUE(none.calls.empty());
  EXPECT_EQ(none.content, "No tools needed: 1 < 2.");
}

TEST(ToolCalls, AMalformedCallStaysContent) {
  for (const std::string& text : {std::string("<tool_call>\n{\"nme\": \"f\"}\n</tool_call>"),
                                 std::string("<tool_call>\n{\"name\": \"f\", \"arguments\": [1]}\n</tool_call>"),
                                 std::string("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}"),  // cut off
                                 std::string("<tool_call>\n{\"name\": \"f\", \"arguments\": {}} trailing")}) {
    const ParsedToolCalls p = parse_tool_calls(hermes_tool_call_format(), text, "c");
    EXPECT_TRUE(p.calls.empty()) << text;
    EXPECT_EQ(p.content, text) << text;
  }
}

// What a stream of events adds up to: content, and each call's name and arguments.
struct Summary {
  std::string content;
  std::map<int, std::pair<std::string, std::string>> calls;
  bool operator==(const Summary&) const = default;
};

void add(Summary& s, const std::vector<ToolCallStream::Event>& events) {
  for (const auto& e : events) {
    switch (e.kind) {
      case ToolCallStream::Event::Kind::kContent: s.content += e.text; break;
      case ToolCallStream::Event::Kind::kCallStart: s.calls[e.index].first = e.text; break;
      case ToolCallStream::Event::Kind::kArguments: s.calls[e.index].second += e.text; break;
      case ToolCallStream::Event::Kind::kCallBroken: s.calls.erase(e.index); break;
    }
  }
}

RC_GTEST_PROP(ToolCallsProperty, StreamingInAnyPiecesAgreesWithTheWholeParse, ()) {
  const std::vector<std::string> parts = {"Sure.", "\n", kWeather, kNoop, " ", "<tool", "_call>", "{\"name\"", "}",
                                          "</tool_call>", "text < with > brackets"};
  std::string text;
  for (std::size_t i = *rc::gen::inRange<std::size_t>(1, 6); i > 0; --i) text += *rc::gen::elementOf(parts);
  const ParsedToolCalls whole = parse_tool_calls(hermes_tool_call_format(), text, "c");
  Summary expected;
  expected.content = whole.content;
  for (std::size_t i = 0; i < whole.calls.size(); ++i) {
    expected.calls[static_cast<int>(i)] = {whole.calls[i].name, whole.calls[i].arguments};
  }
  ToolCallStream stream(hermes_tool_call_format());
  Summary streamed;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t n = *rc::gen::inRange<std::size_t>(1, text.size() - at + 1);
    add(streamed, stream.push(std::string_view(text).substr(at, n)));
    at += n;
  }
  add(streamed, stream.finish());
  RC_LOG() << text << "\n";
  RC_ASSERT(streamed.content == expected.content);
  RC_ASSERT(streamed.calls == expected.calls);
}

TEST(ToolCalls, StreamingSendsTheNameFirstThenArgumentFragments) {
  ToolCallStream s(hermes_tool_call_format());
  std::vector<ToolCallStream::Event> all;
  for (char c : "Ok " + kWeather) {
    for (auto& e : s.push(std::string(1, c))) all.push_back(e);
  }
  for (auto& e : s.finish()) all.push_back(e);
  std::size_t i = 0;
  std::string content;
  for (; i < all.size() && all[i].kind == ToolCallStream::Event::Kind::kContent; ++i) content += all[i].text;
  EXPECT_EQ(content, "Ok");  // as it comes, before the call's tag is certain
  ASSERT_LT(i, all.size());
  EXPECT_EQ(all[i].kind, ToolCallStream::Event::Kind::kCallStart);
  EXPECT_EQ(all[i].text, "get_weather");
  const std::size_t start = i;
  std::string arguments;
  for (++i; i < all.size(); ++i) {
    EXPECT_EQ(all[i].kind, ToolCallStream::Event::Kind::kArguments) << i;
    arguments += all[i].text;
  }
  EXPECT_GT(all.size() - start, 4u);  // fragments as the text comes, not one block at the end
  EXPECT_EQ(arguments, "{\"city\": \"Paris\", \"days\": [1, 2]}");
  EXPECT_EQ(s.calls(), 1);
}

TEST(ToolCalls, OnlyRequiredAndNamedChoicesConstrainTheText) {
  const std::vector<ToolDefinition> tools = {{"a", "", "", ""}, {"b", "", "", ""}};
  const ToolCallFormat f = hermes_tool_call_format();
  EXPECT_FALSE(tool_call_grammar(f, tools, {ToolChoice::Mode::kNone, ""}, true));
  EXPECT_FALSE(tool_call_grammar(f, tools, {ToolChoice::Mode::kAuto, ""}, true));
  const auto required = tool_call_grammar(f, tools, {ToolChoice::Mode::kRequired, ""}, true);
  ASSERT_TRUE(required);
  EXPECT_EQ(required->kind, GrammarSpec::Kind::kToolCalls);
  EXPECT_EQ(required->param, "tools");
  EXPECT_NE(required->source.find("\"a\""), std::string::npos);
  EXPECT_NE(required->source.find("\"b\""), std::string::npos);
  const auto named = tool_call_grammar(f, tools, {ToolChoice::Mode::kNamed, "b"}, false);
  ASSERT_TRUE(named);
  EXPECT_EQ(named->source.find("\"a\""), std::string::npos);
  EXPECT_NE(named->source.find("\"b\""), std::string::npos);
  EXPECT_NE(named->source.find("\"parallel\": false"), std::string::npos);
}

}  // namespace
}  // namespace tiergate::engine
