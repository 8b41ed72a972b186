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

}  // namespace
}  // namespace tiergate::engine
