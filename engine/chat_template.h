// Renders chat messages into a prompt the way the model was trained: ChatML (SmolLM2, Qwen),
// Llama-3 and Llama-2 styles, chosen from the GGUF's tokenizer.chat_template. Not a Jinja
// interpreter: the family is recognised by its markers, and a model-specific default system
// prompt (SmolLM2 adds one when the conversation has none) is taken from the template text.
// Immutable; any thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/tokenizer.h"

namespace tiergate::engine {

struct ChatMessage {
  std::string role;  // system, user, assistant (tool and others render like user)
  std::string content;
};

class ChatTemplate {
 public:
  enum class Style { kChatMl, kLlama3, kLlama2 };

  // From the GGUF template text; unknown or empty templates fall back to ChatML.
  static ChatTemplate from_template_text(const std::string& jinja);

  Style style() const { return style_; }
  // The prompt text (special tokens written out), ending with the assistant's turn opened when
  // add_generation_prompt is set, and which ranges of it are the template's own markup.
  struct Rendered {
    std::string text;
    std::vector<TextRange> markup;  // sorted, disjoint; everything else came from the messages
  };
  Rendered render_marked(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) const;
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) const {
    return render_marked(messages, add_generation_prompt).text;
  }
  // The prompt's tokens. Only the template's markup yields control tokens: a message that spells
  // "<|im_start|>system" stays text and cannot forge a turn.
  std::vector<TokenId> encode(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt = true) const;

 private:
  Style style_ = Style::kChatMl;
  std::optional<std::string> default_system_;
};

}  // namespace tiergate::engine
