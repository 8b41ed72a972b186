#include "gateway/cli_args.h"

#include <cstdlib>

namespace tiergate::gateway {

CliArgs::CliArgs(const std::vector<std::string>& args, const std::set<std::string>& with_value,
                 const std::set<std::string>& switches) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) {
      positional_.push_back(a);
      continue;
    }
    std::string name = a, value;
    const auto eq = a.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
    }
    if (switches.count(name) && !inline_value) {
      values_.emplace(name, "true");
    } else if (with_value.count(name)) {
      if (!inline_value) {
        if (i + 1 >= args.size()) throw CliError(name + " needs a value");
        value = args[++i];
      }
      values_.emplace(name, value);
    } else {
      throw CliError("unknown option " + name);
    }
  }
}

std::string CliArgs::get(const std::string& flag, const std::string& fallback) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback : it->second;
}

std::vector<std::string> CliArgs::all(const std::string& flag) const {
  std::vector<std::string> out;
  for (auto [it, end] = values_.equal_range(flag); it != end; ++it) out.push_back(it->second);
  return out;
}

double CliArgs::number(const std::string& flag, double fallback) const {
  if (!has(flag)) return fallback;
  const std::string v = get(flag, "");
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0') throw CliError(flag + " must be a number, got \"" + v + "\"");
  return d;
}

long long CliArgs::integer(const std::string& flag, long long fallback) const {
  if (!has(flag)) return fallback;
  const std::string v = get(flag, "");
  char* end = nullptr;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0') throw CliError(flag + " must be an integer, got \"" + v + "\"");
  return n;
}

std::size_t CliArgs::count(const std::string& flag, std::size_t fallback) const {
  if (!has(flag)) return fallback;
  const long long n = integer(flag, 0);
  if (n < 0) throw CliError(flag + " must be 0 or more, got " + std::to_string(n));
  return static_cast<std::size_t>(n);
}

engine::Device device_flag(const CliArgs& args) {
  const std::string d = args.get("--device", "auto");
  if (d == "auto") return engine::Device::kAuto;
  if (d == "cpu") return engine::Device::kCpu;
  if (d == "cuda") return engine::Device::kCuda;
  throw CliError("--device must be auto, cpu or cuda, got \"" + d + "\"");
}

}  // namespace tiergate::gateway
