#include "engine/chat_template.h"

namespace tiergate::engine {

ChatTemplate ChatTemplate::from_template_text(const std::string& jinja) {
  ChatTemplate t;
  if (jinja.find("<|start_header_id|>") != std::string::npos) {
    t.style_ = Style::kLlama3;
  } else if (jinja.find("[INST]") != std::string::npos) {
    t.style_ = Style::kLlama2;
  } else {
    t.style_ = Style::kChatMl;
    t.hermes_tools_ = jinja.find("<tool_call>") != std::string::npos;
    // A template that inserts a system turn when the conversation has none carries its text as
    // a literal: '<|im_start|>system\n...<|im_end|>'.
    const std::string open = "<|im_start|>system\n";
    const auto guard = jinja.find("!= 'system'");
    const auto start = jinja.find(open, guard == std::string::npos ? 0 : guard);
    if (guard != std::string::npos && start != std::string::npos) {
      const auto end = jinja.find("<|im_end|>", start);
      if (end != std::string::npos) t.default_system_ = jinja.substr(start + open.size(), end - start - open.size());
    }
  }
  return t;
}

std::optional<ToolCallFormat> ChatTemplate::tool_format() const {
  if (hermes_tools_) return hermes_tool_call_format();
  return std::nullopt;
}

namespace {

// Appends to a rendered prompt, recording which pieces are markup.
class PromptWriter {
 public:
  void markup(std::string_view text) {
    if (text.empty()) return;
    const std::size_t begin = out_.text.size();
    out_.text += text;
    if (!out_.markup.empty() && out_.markup.back().end == begin) {
      out_.markup.back().end = out_.text.size();  // adjacent markup: one range
    } else {
      out_.markup.push_back({begin, out_.text.size()});
    }
  }
  void content(std::string_view text) { out_.text += text; }
  // One message: markup, the role, markup, the content, markup.
  void turn(std::string_view open, const ChatMessage& m, std::string_view between, std::string_view close) {
    markup(open);
    content(m.role);
    markup(between);
    content(m.content);
    markup(close);
  }
  ChatTemplate::Rendered take() { return std::move(out_); }

 private:
  ChatTemplate::Rendered out_;
};

// Qwen2.5 / Hermes: the tools in the system turn, the assistant's calls as <tool_call> blocks,
// consecutive tool results in one user turn of <tool_response> blocks. What the client sent (the
// system text, tool definitions, call names and arguments, results) is content; only the
// template's own words and tags are markup.
void render_hermes(PromptWriter& w, const std::optional<std::string>& default_system,
                   const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                   std::span<const ToolDefinition> tools) {
  const ToolCallFormat format = hermes_tool_call_format();
  std::size_t i = 0;
  const bool client_system = !messages.empty() && messages.front().role == "system";
  const std::string_view system = client_system ? std::string_view(messages.front().content)
                                  : default_system ? std::string_view(*default_system)
                                                   : std::string_view();
  if (client_system) i = 1;
  if (!system.empty() || !tools.empty()) {
    w.markup("<|im_start|>system\n");
    if (client_system) {
      w.content(system);
    } else {
      w.markup(system);  // the model's own text
    }
    if (!tools.empty()) {
      w.markup(std::string(system.empty() ? "" : "\n\n") +
               "# Tools\n\nYou may call the functions whose signatures are listed inside <tools></tools>, one per "
               "line:\n<tools>");
      for (const ToolDefinition& t : tools) {
        w.markup("\n");
        w.content(t.json);
      }
      w.markup("\n</tools>\n\nTo call a function, answer with a JSON object holding its name and its arguments "
               "between <tool_call></tool_call> tags, one block per call:\n<tool_call>\n"
               "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>");
    }
    w.markup("<|im_end|>\n");
  }
  for (; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "tool") {  // consecutive tool results share one user turn
      w.markup("<|im_start|>user");
      for (; i < messages.size() && messages[i].role == "tool"; ++i) {
        w.markup("\n<tool_response>\n");
        w.content(messages[i].content);
        w.markup("\n</tool_response>");
      }
      --i;
      w.markup("<|im_end|>\n");
      continue;
    }
    w.markup("<|im_start|>");
    w.content(m.role);
    w.markup("\n");
    w.content(m.content);
    for (std::size_t c = 0; c < m.tool_calls.size(); ++c) {
      const ToolCall& call = m.tool_calls[c];
      if (c > 0 || !m.content.empty()) w.markup(format.separator);
      w.markup(format.open + "{\"name\": \"");
      w.content(call.name);
      w.markup("\", \"" + format.arguments_key + "\": ");
      if (call.arguments.empty()) {
        w.markup("{}");
      } else {
        w.content(call.arguments);
      }
      w.markup("}" + format.close);
    }
    w.markup("<|im_end|>\n");
  }
  if (add_generation_prompt) w.markup("<|im_start|>assistant\n");
}

}  // namespace

ChatTemplate::Rendered ChatTemplate::render_marked(const std::vector<ChatMessage>& messages,
                                                   bool add_generation_prompt,
                                                   std::span<const ToolDefinition> tools) const {
  PromptWriter w;
  if (hermes_tools_) {
    render_hermes(w, default_system_, messages, add_generation_prompt, tools);
    return w.take();
  }
  switch (style_) {
    case Style::kChatMl:
      if (default_system_ && (messages.empty() || messages.front().role != "system")) {
        w.markup("<|im_start|>system\n" + *default_system_ + "<|im_end|>\n");  // the model's own text
      }
      for (const ChatMessage& m : messages) w.turn("<|im_start|>", m, "\n", "<|im_end|>\n");
      if (add_generation_prompt) w.markup("<|im_start|>assistant\n");
      return w.take();
    case Style::kLlama3:
      w.markup("<|begin_of_text|>");
      for (const ChatMessage& m : messages) w.turn("<|start_header_id|>", m, "<|end_header_id|>\n\n", "<|eot_id|>");
      if (add_generation_prompt) w.markup("<|start_header_id|>assistant<|end_header_id|>\n\n");
      return w.take();
    case Style::kLlama2: {
      std::string_view system;
      std::size_t i = 0;
      if (!messages.empty() && messages[0].role == "system") system = messages[i++].content;
      bool first_user = true;
      for (; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        if (m.role == "assistant") {
          w.markup(" ");
          w.content(m.content);
          w.markup(" </s>");
          continue;
        }
        w.markup("<s>[INST] ");
        if (first_user && !system.empty()) {
          w.markup("<<SYS>>\n");
          w.content(system);
          w.markup("\n<</SYS>>\n\n");
        }
        first_user = false;
        w.content(m.content);
        w.markup(" [/INST]");
      }
      return w.take();
    }
  }
  return w.take();
}

std::vector<TokenId> ChatTemplate::encode(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt, std::span<const ToolDefinition> tools) const {
  const Rendered r = render_marked(messages, add_generation_prompt, tools);
  return tokenizer.encode_templated(r.text, r.markup);
}

}  // namespace tiergate::engine
