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

std::string ChatTemplate::render_hermes(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                        std::span<const ToolDefinition> tools) const {
  const ToolCallFormat format = hermes_tool_call_format();
  std::string out;
  std::size_t i = 0;
  std::string system;
  if (!messages.empty() && messages.front().role == "system") {
    system = messages.front().content;
    i = 1;
  } else if (default_system_) {
    system = *default_system_;
  }
  if (!tools.empty()) {
    system += (system.empty() ? "" : "\n\n") + std::string(
        "# Tools\n\nYou may call the functions whose signatures are listed inside <tools></tools>, one per line:\n"
        "<tools>");
    for (const ToolDefinition& t : tools) system += "\n" + t.json;
    system += "\n</tools>\n\nTo call a function, answer with a JSON object holding its name and its arguments "
              "between <tool_call></tool_call> tags, one block per call:\n<tool_call>\n"
              "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>";
  }
  if (!system.empty() || !tools.empty()) out += "<|im_start|>system\n" + system + "<|im_end|>\n";
  for (; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "tool") {  // consecutive tool results share one user turn
      out += "<|im_start|>user";
      for (; i < messages.size() && messages[i].role == "tool"; ++i) {
        out += "\n<tool_response>\n" + messages[i].content + "\n</tool_response>";
      }
      --i;
      out += "<|im_end|>\n";
      continue;
    }
    out += "<|im_start|>" + m.role + "\n" + m.content;
    for (std::size_t c = 0; c < m.tool_calls.size(); ++c) {
      const ToolCall& call = m.tool_calls[c];
      if (c > 0 || !m.content.empty()) out += format.separator;
      out += format.open + "{\"name\": \"" + call.name + "\", \"" + format.arguments_key + "\": " +
             (call.arguments.empty() ? std::string("{}") : call.arguments) + "}" + format.close;
    }
    out += "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                 std::span<const ToolDefinition> tools) const {
  if (hermes_tools_) return render_hermes(messages, add_generation_prompt, tools);
  std::string out;
  switch (style_) {
    case Style::kChatMl:
      if (default_system_ && (messages.empty() || messages.front().role != "system")) {
        out += "<|im_start|>system\n" + *default_system_ + "<|im_end|>\n";
      }
      for (const ChatMessage& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;
    case Style::kLlama3:
      out += "<|begin_of_text|>";
      for (const ChatMessage& m : messages) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    case Style::kLlama2: {
      std::string system;
      std::size_t i = 0;
      if (!messages.empty() && messages[0].role == "system") system = messages[i++].content;
      bool first_user = true;
      for (; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        if (m.role == "assistant") {
          out += " " + m.content + " </s>";
          continue;
        }
        out += "<s>[INST] ";
        if (first_user && !system.empty()) out += "<<SYS>>\n" + system + "\n<</SYS>>\n\n";
        first_user = false;
        out += m.content + " [/INST]";
      }
      return out;
    }
  }
  return out;
}

}  // namespace tiergate::engine
