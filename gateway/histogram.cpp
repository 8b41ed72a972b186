#include "gateway/histogram.h"

#include <cstdio>

namespace tiergate::gateway {

void Histogram::observe(double seconds) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    if (seconds <= kBounds[i]) ++counts_[i];
  }
  ++count_;
  sum_ += seconds;
}

std::string Histogram::render(const std::string& name, const std::string& labels) const {
  std::lock_guard lock(mutex_);
  const std::string sep = labels.empty() ? "" : ",";
  std::string out;
  char line[256];
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    std::snprintf(line, sizeof line, "%s_bucket{%s%sle=\"%g\"} %llu\n", name.c_str(), labels.c_str(), sep.c_str(),
                  kBounds[i], static_cast<unsigned long long>(counts_[i]));
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
