// Binds a parsed request's output constraints to the served model: tools go through the chat
// template when it defines tool calls (refused, naming `tools`, when it does not), a required or
// named tool call becomes a grammar, and the grammar (that one, or response_format's / guided_*'s)
// is compiled (or found) in the cache and set on the sampling parameters. Assistant messages
// carrying tool_calls are refused (naming `messages`) for a template without tool calls. A schema or expression
// outside the supported subset is a 400 naming the request field. Any thread.
#pragma once

#include <optional>

#include "engine/chat_template.h"
#include "engine/grammar.h"
#include "gateway/openai_protocol.h"

namespace tiergate::gateway {

// `tool_format` is set when the request offers tools to the model (tool_choice other than none).
std::optional<ApiError> bind_output_constraints(GenerationRequest& request, const engine::ChatTemplate& chat_template,
                                                const engine::Tokenizer& tokenizer, engine::GrammarCache& grammars,
                                                std::optional<engine::ToolCallFormat>& tool_format);

}  // namespace tiergate::gateway
