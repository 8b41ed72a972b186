// Command-line flags of the tiergate sub-commands: "--name value" pairs and bare "--switch"es,
// checked against what the command accepts, with errors that name the flag.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace tiergate::gateway {

class CliError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class CliArgs {
 public:
  // Throws CliError for an unknown flag or a value-taking flag without its value.
  CliArgs(const std::vector<std::string>& args, const std::set<std::string>& with_value,
          const std::set<std::string>& switches);

  bool has(const std::string& flag) const { return values_.count(flag) != 0; }
  std::string get(const std::string& flag, const std::string& fallback) const;
  std::vector<std::string> all(const std::string& flag) const;  // repeated flags
  double number(const std::string& flag, double fallback) const;
  long long integer(const std::string& flag, long long fallback) const;
  std::size_t count(const std::string& flag, std::size_t fallback) const;  // integer >= 0
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::multimap<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

// --device auto|cpu|cuda (throws CliError otherwise).
engine::Device device_flag(const CliArgs& args);

}  // namespace tiergate::gateway
