// gateway/choice_output.*: what a client sees of a choice — the echoed prompt (and its logprobs)
// first, and for a chat offering tools, the calls parsed out of the text and streamed as OpenAI
// streams them (a first delta with index, id, type and name, then argument fragments), the whole
// answer's message.tool_calls and the "tool_calls" finish reason.
#include "gateway/choice_output.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <cmath>
#include <limits>

namespace tiergate::gateway {
namespace {

engine::RequestOutput output(std::string text, std::vector<engine::SampledToken> logprobs = {}) {
  engine::RequestOutput o;
  o.text = std::move(text);
  o.logprobs = std::move(logprobs);
  return o;
}

engine::SampledToken scored(engine::TokenId token, float logprob) {
  engine::SampledToken t;
  t.token = token;
  t.logprob = logprob;
  return t;
}

TEST(ChoiceOutput, EchoPutsThePromptAndItsLogprobsFirst) {
  ChoiceOutput c("The prompt", std::nullopt, "call_");
  const std::vector<engine::SampledToken> prompt = {scored(1, std::numeric_limits<float>::quiet_NaN()), scored(2, -0.5f)};
  const ChoiceDelta first = c.push(output(" and", {scored(3, -1.0f)}), prompt);
  EXPECT_EQ(first.text, "The prompt and");
  ASSERT_EQ(first.logprobs.size(), 3u);
  EXPECT_TRUE(std::isnan(first.logprobs[0].logprob));
  EXPECT_EQ(first.logprobs[2].token, 3);
  const ChoiceDelta second = c.push(output(" more", {scored(4, -2.0f)}), prompt);
  EXPECT_EQ(second.text, " more");  // the prompt comes once
  ASSERT_EQ(second.logprobs.size(), 1u);
  std::string finish = "length";
  c.finish(finish);
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(c.result().text, "The prompt and more");
  EXPECT_EQ(c.result().logprobs.size(), 4u);
  EXPECT_TRUE(c.result().tool_calls.empty());
}

TEST(ChoiceOutput, ToolCallsStreamAsOpenAiDeltasAndEndWithToolCalls) {
  ChoiceOutput c("", engine::hermes_tool_call_format(), "call_9_0_");
  const std::string text =
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
  std::vector<ChoiceDelta> deltas;
  for (std::size_t at = 0; at < text.size(); at += 7) deltas.push_back(c.push(output(text.substr(at, 7)), {}));
  std::string finish = "stop";
  deltas.push_back(c.finish(finish));
  EXPECT_EQ(finish, "tool_calls");

  std::string content, name, id, arguments;
  simdjson::dom::parser parser;
  int starts = 0;
  for (const ChoiceDelta& d : deltas) {
    content += d.text;
    if (d.tool_calls.empty()) continue;
    simdjson::dom::array calls;
    ASSERT_EQ(parser.parse(simdjson::padded_string(d.tool_calls)).get_array().get(calls), simdjson::SUCCESS)
        << d.tool_calls;
    for (simdjson::dom::element call : calls) {
      std::int64_t index = -1;
      ASSERT_EQ(call["index"].get_int64().get(index), simdjson::SUCCESS);
      EXPECT_EQ(index, 0);
      std::string_view v;
      if (call["id"].get_string().get(v) == simdjson::SUCCESS) {
        ++starts;
        id = v;
        std::string_view type;
        EXPECT_EQ(call["type"].get_string().get(type), simdjson::SUCCESS);
        EXPECT_EQ(type, "function");
        EXPECT_EQ(call["function"]["name"].get_string().get(v), simdjson::SUCCESS);
        name = v;
      }
      if (call["function"]["arguments"].get_string().get(v) == simdjson::SUCCESS) arguments += v;
    }
  }
  EXPECT_EQ(content, "");  // the call is no content
  EXPECT_EQ(starts, 1);
  EXPECT_EQ(id, "call_9_0_0");
  EXPECT_EQ(name, "get_weather");
  EXPECT_EQ(arguments, "{\"city\": \"Paris\"}");
  ASSERT_EQ(c.result().tool_calls.size(), 1u);
  EXPECT_EQ(c.result().tool_calls[0].name, "get_weather");
  EXPECT_EQ(c.result().tool_calls[0].arguments, arguments);
  EXPECT_EQ(c.result().finish_reason, "tool_calls");
  // The whole body's list, as OpenAI's message.tool_calls.
  simdjson::dom::element list;
  ASSERT_EQ(parser.parse(simdjson::padded_string(tool_calls_json(c.result().tool_calls))).get(list), simdjson::SUCCESS);
  std::string_view whole;
  EXPECT_EQ(list.at(0)["function"]["arguments"].get_string().get(whole), simdjson::SUCCESS);
  EXPECT_EQ(whole, arguments);
}

TEST(ChoiceOutput, TextWithoutACallStaysContentUnderTools) {
  ChoiceOutput c("", engine::hermes_tool_call_format(), "c");
  std::string content = c.push(output("It is sunny; no <tool"), {}).text;
  content += c.push(output(" needed."), {}).text;
  std::string finish = "stop";
  content += c.finish(finish).text;
  EXPECT_EQ(content, "It is sunny; no <tool needed.");
  EXPECT_EQ(finish, "stop");
  EXPECT_TRUE(c.result().tool_calls.empty());
  EXPECT_EQ(c.result().text, content);
}

}  // namespace
}  // namespace tiergate::gateway
