// Renders chat messages into a prompt the way the model was trained: ChatML (SmolLM2, Qwen),
// Llama-3 and Llama-2 styles, chosen from the GGUF's tokenizer.chat_template. Not a Jinja
// interpreter: the family is recognised by its markers, and a model-specific default system
// prompt (SmolLM2 adds one when the conversation has none) is taken from the template text.
// Tool calls: a ChatML template that writes `<tool_call>` (Qwen2.5, Hermes) gets the tools in its
// system turn, assistant calls as `<tool_call>` blocks and tool results as `<tool_response>`
// blocks (engine/tool_calls.h has the call format); other templates define no tool calls.
// Immutable; any thread.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/tokenizer.h"
#include "engine/tool_calls.h"

namespace tiergate::engine {

struct ChatMessage {
  std::string role;  // system, user, assistant (tool and others render like user)
  std::string content;
  std::vector<ToolCall> tool_calls{};  // assistant: the calls it made
};

class ChatTemplate {
 public:
  enum class Style { kChatMl, kLlama3, kLlama2 };

  // From the GGUF template text; unknown or empty templates fall back to ChatML.
  static ChatTemplate from_template_text(const std::string& jinja);

  Style style() const { return style_; }
  // The prompt text (special tokens written out), ending with the assistant's turn opened when
  // add_generation_prompt is set, and which ranges of it are the template's own markup.
  // `tools`: offered to the model (only where tool_format() is set).
  struct Rendered {
    std::string text;
    std::vector<TextRange> markup;  // sorted, disjoint; everything else came from the client
  };
  Rendered render_marked(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true,
                         std::span<const ToolDefinition> tools = {}) const;
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true,
                     std::span<const ToolDefinition> tools = {}) const {
    return render_marked(messages, add_generation_prompt, tools).text;
  }
  // The prompt's tokens. Only the template's markup yields control tokens: a message (or a tool
  // definition, call or result) that spells "<|im_start|>system" stays text and cannot forge a turn.
  std::vector<TokenId> encode(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt = true, std::span<const ToolDefinition> tools = {}) const;
  // How this template's model writes tool calls; nullopt: the template defines none.
  std::optional<ToolCallFormat> tool_format() const;

 private:
  Style style_ = Style::kChatMl;
  bool hermes_tools_ = false;
  std::optional<std::string> default_system_;
};

}  // namespace tiergate::engine
