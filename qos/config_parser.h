// Reads and validates a qos_config.json (LMDeploy-QoS format plus tiergate's extensions) into an
// immutable Config. This is the only place where a config can be rejected: every problem is
// collected (not just the first) with its file, JSON path, reason and fix, so an operator sees the
// whole list at once. Parsing never throws on bad input; load_config_or_throw is for start-up only
// (DESIGN.md §7, tier 1). Pure function of its input; safe from any thread.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "qos/config.h"

namespace tiergate::qos {

struct ConfigError {
  std::string path;     // JSON path such as $.user_group_map.Gold[1].quota_pct; "$" = the document
  std::string message;  // what is wrong, quoting what was found
  std::string fix;      // what to write instead
};

struct ConfigParseResult {
  std::string file;                      // as given, for messages
  std::shared_ptr<const Config> config;  // null exactly when errors is non-empty
  std::vector<ConfigError> errors;

  bool ok() const { return config != nullptr; }
  // One line per error: "FILE: PATH: MESSAGE (fix: FIX)".
  std::string describe() const;
};

// The keys a config file may hold at its top level; anything else is an error (a typo must not
// silently disable QoS).
inline constexpr std::string_view kTopLevelKeys[] = {
    "enable_user_qos", "user_groups", "user_group_map", "default_group", "token_weights",
    "group_limits"};

ConfigParseResult parse_config(std::string_view json_text, std::string_view file_name);
ConfigParseResult load_config_file(const std::string& path);

class ConfigLoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Start-up helper: the config or a ConfigLoadError whose what() lists every problem.
std::shared_ptr<const Config> load_config_or_throw(const std::string& path);

}  // namespace tiergate::qos
