#include "gateway/histogram.h"

#include <cstdio>
#include <utility>

namespace tiergate::gateway {

Histogram::Histogram() : Histogram({0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0}) {}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size(), 0) {}

void Histogram::observe(double seconds) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    if (seconds <= bounds_[i]) ++counts_[i];
  }
  ++count_;
  sum_ += seconds;
}

std::string Histogram::render(const std::string& name, const std::string& labels) const {
  std::lock_guard lock(mutex_);
  const std::string sep = labels.empty() ? "" : ",";
  std::string out;
  char line[256];
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    std::snprintf(line, sizeof line, "%s_bucket{%s%sle=\"%g\"} %llu\n", name.c_str(), labels.c_str(), sep.c_str(),
                  bounds_[i], static_cast<unsigned long long>(counts_[i]));
    out += line;
  }
  std::snprintf(line, sizeof line, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name.c_str(), labels.c_str(), sep.c_str(),
                static_cast<unsigned long long>(count_));
  out += line;
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  std::snprintf(line, sizeof line, "%s_sum%s %.6f\n%s_count%s %llu\n", name.c_str(), braces.c_str(), sum_,
                name.c_str(), braces.c_str(), static_cast<unsigned long long>(count_));
  return out + line;
}

}  // namespace tiergate::gateway
