#include "gateway/histogram.h"

#include <cstdio>
#include <string>
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
  // Label values (group names) can be long: the lines are built, not printed into a fixed buffer.
  const std::string open = name + "_bucket{" + labels + (labels.empty() ? "" : ",") + "le=\"";
  std::string out;
  char number[64];
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    std::snprintf(number, sizeof number, "%g", bounds_[i]);
    out += open + number + "\"} " + std::to_string(counts_[i]) + "\n";
  }
  out += open + "+Inf\"} " + std::to_string(count_) + "\n";
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  std::snprintf(number, sizeof number, "%.6f", sum_);
  out += name + "_sum" + braces + " " + number + "\n";
  out += name + "_count" + braces + " " + std::to_string(count_) + "\n";
  return out;
}

}  // namespace tiergate::gateway
