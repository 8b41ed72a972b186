// A Prometheus histogram (cumulative buckets in seconds, sum, count). Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace tiergate::gateway {

class Histogram {
 public:
  // Bucket upper bounds in seconds, ascending: the default suits request latencies.
  Histogram();
  explicit Histogram(std::vector<double> bounds);

  void observe(double seconds);
  // The histogram's lines for `name` with the given label set (e.g. `group="Gold"`, may be empty).
  std::string render(const std::string& name, const std::string& labels) const;

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<std::uint64_t> counts_;  // per bound, cumulative
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace tiergate::gateway
