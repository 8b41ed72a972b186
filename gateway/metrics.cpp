#include "gateway/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

namespace tiergate::gateway {

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string format_sample_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, end);
}

std::string render_labels(std::initializer_list<Label> labels) {
  std::string out;
  for (const auto& [name, value] : labels) {
    if (!out.empty()) out += ',';
    out += name;
    out += "=\"";
    out += escape_label_value(value);
    out += '"';
  }
  return out;
}

void MetricsText::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += help;  // our own constant text: no backslash or line feed to escape
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void MetricsText::sample(std::string_view name, std::initializer_list<Label> labels, double value) {
  out_ += name;
  if (labels.size() > 0) {
    out_ += '{';
    out_ += render_labels(labels);
    out_ += '}';
  }
  out_ += ' ';
  out_ += format_sample_value(value);
  out_ += '\n';
}

UserSeries select_user_series(const std::vector<qos::UserUsage>& users, std::size_t limit) {
  std::vector<std::size_t> order(users.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  const std::size_t keep = std::min(limit, users.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(),
                    [&](std::size_t a, std::size_t b) {
                      if (users[a].weighted_tokens != users[b].weighted_tokens) {
                        return users[a].weighted_tokens > users[b].weighted_tokens;
                      }
                      return users[a].user_id < users[b].user_id;
                    });
  std::vector<bool> shown(users.size(), false);
  for (std::size_t i = 0; i < keep; ++i) shown[order[i]] = true;
  UserSeries out;
  std::map<std::string, std::size_t> rest_index;
  for (std::size_t i = 0; i < users.size(); ++i) {
    if (shown[i]) {
      out.shown.push_back(&users[i]);
      continue;
    }
    auto [it, inserted] = rest_index.emplace(users[i].group, out.rest.size());
    if (inserted) out.rest.push_back({users[i].group, 0, 0, 0});
    UserSeries::Rest& r = out.rest[it->second];
    ++r.users;
    r.prompt_tokens += users[i].prompt_tokens;
    r.output_tokens += users[i].output_tokens;
  }
  return out;
}

}  // namespace tiergate::gateway
