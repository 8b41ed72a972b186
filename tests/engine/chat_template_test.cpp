// engine/chat_template.*: the three families, and SmolLM2's own template from its GGUF.
#include "engine/chat_template.h"

#include <gtest/gtest.h>

#include "tests/engine/model_fixture.h"

namespace tiergate::engine {
namespace {

TEST(ChatTemplate, SmolLm2AddsItsDefaultSystemPrompt) {
  TG_REQUIRE_MODEL(model);
  const ChatTemplate t = ChatTemplate::from_template_text(model->chat_template());
  EXPECT_EQ(t.style(), ChatTemplate::Style::kChatMl);
  // The same text llama.cpp's fixture prompts were built from.
  EXPECT_EQ(t.render({{"user", "What is the capital of France?"}}),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t.render({{"system", "Be brief."}, {"user", "Hi"}}, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, Llama3AndLlama2Families) {
  const ChatTemplate l3 = ChatTemplate::from_template_text("{{ '<|start_header_id|>' + message['role'] }}");
  EXPECT_EQ(l3.render({{"user", "Hi"}}),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  const ChatTemplate l2 = ChatTemplate::from_template_text("{{ '[INST] ' + content + ' [/INST]' }}");
  EXPECT_EQ(l2.render({{"system", "S"}, {"user", "A"}, {"assistant", "B"}, {"user", "C"}}),
            "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nA [/INST] B </s><s>[INST] C [/INST]");
}

TEST(ChatTemplate, OnlyATemplateThatWritesToolCallsHasAToolFormat) {
  TG_REQUIRE_MODEL(model);
  EXPECT_FALSE(ChatTemplate::from_template_text(model->chat_template()).tool_format());  // SmolLM2: none
  EXPECT_FALSE(ChatTemplate::from_template_text("{{ '<|start_header_id|>' + message['role'] }}").tool_format());
}

// Qwen2.5's template (abridged to its markers): tools in the system turn, the assistant's calls as
// <tool_call> blocks, consecutive tool results in one user turn of <tool_response> blocks.
TEST(ChatTemplate, HermesToolsCallsAndResults) {
  const ChatTemplate t = ChatTemplate::from_template_text(
      "{%- if tools %}{{- '<|im_start|>system\\n' }}{{- '<tool_call>' }}{%- endif %}<|im_start|>");
  ASSERT_TRUE(t.tool_format());
  EXPECT_EQ(t.tool_format()->open, "<tool_call>\n");
  const std::vector<ToolDefinition> tools = {{"f", "", "{}", R"({"type":"function","function":{"name":"f"}})"}};
  std::vector<ChatMessage> messages = {{"user", "Call f twice."}};
  ChatMessage calls{"assistant", ""};
  calls.tool_calls = {{"c0", "f", R"({"x":1})"}, {"c1", "f", ""}};
  messages.push_back(calls);
  messages.push_back({"tool", "one"});
  messages.push_back({"tool", "two"});
  const std::string text = t.render(messages, true, tools);
  EXPECT_EQ(text.rfind("<|im_start|>system\n# Tools", 0), 0u) << text;
  EXPECT_NE(text.find("<tools>\n{\"type\":\"function\",\"function\":{\"name\":\"f\"}}\n</tools>"), std::string::npos) << text;
  EXPECT_NE(text.find("<|im_start|>user\nCall f twice.<|im_end|>\n"
                      "<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\":1}}\n</tool_call>\n"
                      "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call><|im_end|>\n"
                      "<|im_start|>user\n<tool_response>\none\n</tool_response>\n<tool_response>\ntwo\n</tool_response>"
                      "<|im_end|>\n<|im_start|>assistant\n"),
            std::string::npos)
      << text;
  // Without tools offered, no tools section.
  EXPECT_EQ(t.render({{"user", "Hi"}}, true), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

}  // namespace
}  // namespace tiergate::engine
