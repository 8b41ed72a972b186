// Seeded test inputs shared by the kernel tests (CPU and GPU): the same seed gives the same data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace tiergate::kernels::testing {

// n normally distributed floats with standard deviation `scale`.
inline std::vector<float> random_floats(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace tiergate::kernels::testing
