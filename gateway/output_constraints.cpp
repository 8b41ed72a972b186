#include "gateway/output_constraints.h"

#include <algorithm>

namespace tiergate::gateway {

std::optional<ApiError> bind_output_constraints(GenerationRequest& req, const engine::ChatTemplate& chat_template,
                                                const engine::Tokenizer& tokenizer, engine::GrammarCache& grammars,
                                                std::optional<engine::ToolCallFormat>& tool_format) {
  tool_format.reset();
  const bool calls_in_history = std::any_of(req.messages.begin(), req.messages.end(),
                                            [](const engine::ChatMessage& m) { return !m.tool_calls.empty(); });
  if (calls_in_history && !chat_template.tool_format()) {
    return ApiError{400,
                    "an assistant message has 'tool_calls', but this model's chat template defines no tool calls "
                    "(it could not show them to the model)",
                    "invalid_request_error", "messages", "unsupported_parameter"};
  }
  if (!req.tools.empty() && req.tool_choice.mode != engine::ToolChoice::Mode::kNone) {
    tool_format = chat_template.tool_format();
    if (!tool_format) {
      return ApiError{400,
                      "'tools' is not supported for this model: its chat template defines no tool calls (models "
                      "whose template writes <tool_call> blocks, such as Qwen2.5 or Hermes, support them)",
                      "invalid_request_error", "tools", "unsupported_parameter"};
    }
    if (auto spec = engine::tool_call_grammar(*tool_format, req.tools, req.tool_choice, req.parallel_tool_calls)) {
      req.grammar = std::move(*spec);
    }
  }
  if (!req.grammar) return std::nullopt;
  auto compiled = grammars.get(*req.grammar, tokenizer);
  if (auto* e = std::get_if<engine::GrammarError>(&compiled)) {
    if (e->busy) return ApiError{503, e->message, "server_error", req.grammar->param, "server_busy"};
    return ApiError{400, "'" + req.grammar->param + "': " + e->message, "invalid_request_error", req.grammar->param,
                    "unsupported_parameter"};
  }
  req.params.grammar = std::get<std::shared_ptr<const engine::Grammar>>(compiled);
  return std::nullopt;
}

}  // namespace tiergate::gateway
