// Every request field of the generation routes and what tiergate does with it: implemented,
// refused (400, code unsupported_parameter, the field named), or accepted and meaningless here (with
// the reason). A field no route row lists is refused as unknown (400, code unknown_parameter), so no
// parameter is ever dropped in silence. This one table drives the parser's check, is the README's
// table (tests/gateway/request_fields_test.cpp compares them) and is what the integration test walks
// against the real server (tests/integration/test_openai_surface.py). Immutable; any thread.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "gateway/openai_protocol.h"

namespace simdjson::dom {
class object;
}

namespace tiergate::gateway {

// The generation routes, as bits so that one row can cover several.
enum RouteBit : unsigned {
  kRouteChat = 1u << 0,            // /v1/chat/completions
  kRouteCompletion = 1u << 1,      // /v1/completions
  kRouteChatQos = 1u << 2,         // /v1/chat/completions_qos
  kRouteCompletionQos = 1u << 3,   // /v1/completions_qos
  kRouteInteractive = 1u << 4,     // /v1/chat/interactive_qos
};
RouteBit route_bit(Endpoint endpoint, bool qos_route);

enum class FieldStatus { kImplemented, kRefused, kIgnored };
const char* to_string(FieldStatus status);  // "implemented", "refused", "ignored"

struct RequestField {
  std::string_view name;
  unsigned routes;  // RouteBit set; on other routes the field is unknown
  FieldStatus status;
  // kRefused: a JSON value (minified) that asks for nothing and is accepted, e.g. `1` for best_of;
  // empty when none. JSON null is accepted for every refused or ignored field (clients send
  // null for "not given").
  std::string_view neutral;
  // A body fragment (JSON object) that sets the field: accepted where implemented or ignored,
  // refused where refused. The integration test sends it; the README shows it.
  std::string_view example;
  std::string_view note;  // what it does here, or why it is refused or meaningless
};

std::span<const RequestField> request_fields();
// The row for `name` on `route`, or null when the field is unknown there.
const RequestField* find_request_field(std::string_view name, RouteBit route);

// The first key of `body` that `route` does not accept: unknown there, or refused and set to
// something other than null or its neutral value. nullopt when every key is accepted.
std::optional<ApiError> check_request_fields(const simdjson::dom::object& body, RouteBit route);

// The README's table of the fields, generated from request_fields().
std::string request_fields_markdown();

}  // namespace tiergate::gateway
