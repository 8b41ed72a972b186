#include "qos/config_writer.h"

#include <charconv>
#include <cstdio>

#include "qos/utf8.h"

namespace tiergate::qos {

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (std::size_t at = 0; at < text.size();) {
    const char ch = text[at];
    if (static_cast<unsigned char>(ch) >= 0x80) {  // file paths and error texts need not be UTF-8
      const std::size_t n = utf8_sequence(text, at);
      out += n ? text.substr(at, n) : "\\ufffd";
      at += n ? n : 1;
      continue;
    }
    ++at;
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(ch));
          out += escaped;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

std::string json_number(double value) {
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, end);
}

std::string to_json(const Config& config) {
  std::string out = "{\n  \"enable_user_qos\": ";
  out += config.enable_user_qos() ? "true" : "false";
  out += ",\n  \"user_groups\": [";
  const auto& groups = config.groups();
  for (std::size_t g = 0; g < groups.size(); ++g) {
    out += (g ? ", " : "") + json_string(groups[g].name);
  }
  out += "],\n  \"user_group_map\": {";
  for (std::size_t g = 0; g < groups.size(); ++g) {
    out += (g ? ",\n    " : "\n    ") + json_string(groups[g].name) + ": [";
    const auto& users = groups[g].users;
    for (std::size_t u = 0; u < users.size(); ++u) {
      out += (u ? ",\n      " : "\n      ");
      out += "{\"id\": " + json_string(users[u].id) +
             ", \"quota_pct\": " + json_number(users[u].quota_pct) + "}";
    }
    out += users.empty() ? "]" : "\n    ]";
  }
  out += groups.empty() ? "}" : "\n  }";
  if (config.default_group()) {
    out += ",\n  \"default_group\": " + json_string(*config.default_group());
  }
  if (config.weights() != TokenWeights{}) {
    out += ",\n  \"token_weights\": {\"input\": " + json_number(config.weights().input) +
           ", \"output\": " + json_number(config.weights().output) + "}";
  }
  std::string limits;
  for (const Group& group : groups) {
    if (group.limits == GroupLimits{}) continue;
    limits += (limits.empty() ? "\n    " : ",\n    ") + json_string(group.name) + ": {";
    std::string fields;
    auto add = [&](const char* key, const std::string& value) {
      fields += (fields.empty() ? "\"" : ", \"") + std::string(key) + "\": " + value;
    };
    if (group.limits.max_queued) add("max_queued", std::to_string(*group.limits.max_queued));
    if (group.limits.max_queue_wait_s) add("max_queue_wait_s", json_number(*group.limits.max_queue_wait_s));
    add("retry_after_s", json_number(group.limits.retry_after_s));
    if (group.limits.lower_groups_step_tokens != kDefaultLowerGroupsStepTokens) {
      add("lower_groups_step_tokens", std::to_string(group.limits.lower_groups_step_tokens));
    }
    limits += fields + "}";
  }
  if (!limits.empty()) out += ",\n  \"group_limits\": {" + limits + "\n  }";
  return out + "\n}\n";
}

}  // namespace tiergate::qos
