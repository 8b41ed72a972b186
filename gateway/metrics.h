// Prometheus text exposition (format 0.0.4) for /metrics: families with HELP and TYPE, samples with
// every label value escaped as the format requires (backslash, double quote, line feed), numbers
// as Prometheus reads them (+Inf, -Inf, NaN). Label values must be valid UTF-8; the gateway's come
// from route templates, validated JSON (user ids) and the validated QoS config. Also the choice of
// which users get series of their own: the top N by service, the rest summed (cardinality bound).
// Pure value code; no locks, any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qos/usage_report.h"

namespace tiergate::gateway {

using Label = std::pair<std::string_view, std::string_view>;

std::string escape_label_value(std::string_view value);
std::string format_sample_value(double value);
// `name="value",...` with escaped values (no braces), as Histogram::render takes them.
std::string render_labels(std::initializer_list<Label> labels);

class MetricsText {
 public:
  // A family's HELP and TYPE lines (type: counter, gauge, histogram).
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, std::initializer_list<Label> labels, double value);
  void append(const std::string& lines) { out_ += lines; }  // pre-rendered samples (histograms)
  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

// The users that get series of their own: the `limit` with the most weighted tokens (ties by id),
// in report order; `rest` gets every other user's tokens summed per group (group → prompt, output).
struct UserSeries {
  std::vector<const qos::UserUsage*> shown;
  struct Rest {
    std::string group;
    std::size_t users = 0;
    std::int64_t prompt_tokens = 0;
    std::int64_t output_tokens = 0;
  };
  std::vector<Rest> rest;  // groups in first-seen order
};
UserSeries select_user_series(const std::vector<qos::UserUsage>& users, std::size_t limit);

}  // namespace tiergate::gateway
