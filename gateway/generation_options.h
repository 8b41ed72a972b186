// The request fields beyond the sampling parameters, parsed after them by parse_generation: the
// LMDeploy defaults of the *_qos routes for what a body leaves out, logit_bias, echo,
// skip_special_tokens, stream_options' keys, and the output constraints (response_format,
// guided_json / guided_regex / guided_choice, tools and tool_choice). Each problem is a 400 naming
// its field. Pure functions.
#pragma once

#include <optional>

#include "gateway/openai_protocol.h"

namespace simdjson::dom {
class element;
class object;
}

namespace tiergate::gateway {

std::optional<ApiError> parse_generation_options(const simdjson::dom::object& body, Endpoint endpoint, bool qos_route,
                                                 GenerationRequest& request);

// An assistant message's `tool_calls` (OpenAI's shape) into `message.tool_calls`; other roles may
// not have them.
std::optional<ApiError> parse_message_tool_calls(const simdjson::dom::element& message, engine::ChatMessage& out);

}  // namespace tiergate::gateway
