// A Prometheus histogram (cumulative buckets in seconds, sum, count). Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>

namespace tiergate::gateway {

class Histogram {
 public:
  void observe(double seconds);
  // The histogram's lines for `name` with the given label set (e.g. `group="Gold"`, may be empty).
  std::string render(const std::string& name, const std::string& labels) const;

 private:
  static constexpr std::array<double, 12> kBounds = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                     0.25,  0.5,   1.0,  2.5,   5.0,  10.0};
  mutable std::mutex mutex_;
  std::array<std::uint64_t, kBounds.size()> counts_{};
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace tiergate::gateway
