#include "gateway/choice_output.h"

#include "qos/config_writer.h"

namespace tiergate::gateway {

using qos::json_string;

ChoiceOutput::ChoiceOutput(std::string echo, std::optional<engine::ToolCallFormat> tools, std::string call_id_prefix)
    : echo_(std::move(echo)), call_id_prefix_(std::move(call_id_prefix)) {
  if (tools) parser_.emplace(std::move(*tools));
}

void ChoiceOutput::take(std::vector<engine::ToolCallStream::Event> events, ChoiceDelta& delta) {
  using Kind = engine::ToolCallStream::Event::Kind;
  std::string list;
  int open_arguments = -1;  // index of the entry whose arguments are being appended to, in `list`
  std::string arguments;
  auto close_arguments = [&] {
    if (open_arguments < 0) return;
    list += (list.empty() ? "" : ", ") + std::string("{\"index\": ") + std::to_string(open_arguments) +
            ", \"function\": {\"arguments\": " + json_string(arguments) + "}}";
    open_arguments = -1;
    arguments.clear();
  };
  for (auto& e : events) {
    switch (e.kind) {
      case Kind::kContent:
        delta.text += e.text;
        result_.text += e.text;
        break;
      case Kind::kCallStart: {
        close_arguments();
        const std::string id = call_id_prefix_ + std::to_string(e.index);
        list += (list.empty() ? "" : ", ") + std::string("{\"index\": ") + std::to_string(e.index) +
                ", \"id\": " + json_string(id) + ", \"type\": \"function\", \"function\": {\"name\": " +
                json_string(e.text) + ", \"arguments\": \"\"}}";
        result_.tool_calls.push_back({id, e.text, ""});
        break;
      }
      case Kind::kArguments:
        if (open_arguments != e.index) close_arguments();
        open_arguments = e.index;
        arguments += e.text;
        result_.tool_calls.back().arguments += e.text;
        break;
      case Kind::kCallBroken:  // streamed already; the whole answer keeps it as content instead
        close_arguments();
        result_.tool_calls.pop_back();
        break;
    }
  }
  close_arguments();
  if (!list.empty()) delta.tool_calls = "[" + list + "]";
}

ChoiceDelta ChoiceOutput::push(const engine::RequestOutput& o, const std::vector<engine::SampledToken>& prompt_logprobs) {
  ChoiceDelta delta;
  if (first_) {
    first_ = false;
    delta.text = echo_;
    result_.text = echo_;
    delta.logprobs = prompt_logprobs;
  }
  delta.logprobs.insert(delta.logprobs.end(), o.logprobs.begin(), o.logprobs.end());
  result_.logprobs.insert(result_.logprobs.end(), delta.logprobs.begin(), delta.logprobs.end());
  if (parser_) {
    take(parser_->push(o.text), delta);
  } else {
    delta.text += o.text;
    result_.text += o.text;
  }
  return delta;
}

ChoiceDelta ChoiceOutput::finish(std::string& finish_reason) {
  ChoiceDelta delta;
  if (parser_) take(parser_->finish(), delta);
  if (!result_.tool_calls.empty() && finish_reason == "stop") finish_reason = "tool_calls";
  result_.finish_reason = finish_reason;
  return delta;
}

}  // namespace tiergate::gateway
