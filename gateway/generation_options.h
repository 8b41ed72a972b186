// The request fields beyond the sampling parameters, parsed after them by parse_generation: the
// LMDeploy defaults of the *_qos routes for what a body leaves out, logit_bias, echo,
// skip_special_tokens, stream_options' keys, and the output constraints (response_format,
// guided_json / guided_regex / guided_choice, tools and tool_choice). Each problem is a 400 naming
// its field. Pure functions.
#pragma once

#include <optional>

#include "gateway/openai_protocol.h"

namespace simdjson::dom {
class object;
}

namespace tiergate::gateway {

std::optional<ApiError> parse_generation_options(const simdjson::dom::object& body, Endpoint endpoint, bool qos_route,
                                                 GenerationRequest& request);

}  // namespace tiergate::gateway
