// Writes a Config back as qos_config.json text (LMDeploy-QoS keys first, extensions only where they
// differ from the defaults), so that parse_config(to_json(c)) == c. Used by the admin API to show
// the config in force and by the round-trip tests. Pure; safe from any thread.
#pragma once

#include <string>

#include "qos/config.h"

namespace tiergate::qos {

std::string to_json(const Config& config);

// JSON string literal with the escapes RFC 8259 requires (shared with the usage report); a byte
// that is not part of well-formed UTF-8 becomes U+FFFD, so the literal is always valid JSON.
std::string json_string(std::string_view text);

// Shortest text that reads back as the same double.
std::string json_number(double value);

}  // namespace tiergate::qos
