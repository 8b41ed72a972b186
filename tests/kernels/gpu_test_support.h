// Shared by the GPU tests: skip with the reason where no CUDA device is usable, so the suite
// passes on machines without a GPU and says why its `gpu` tests did not run; device copies
// ordered on a stream; bit-exact comparison; the host's replay of fill_uniform.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cuda/device.h"
#include "kernels/mix64.h"

#define TG_REQUIRE_GPU()                                                         \
  do {                                                                           \
    std::string why_no_gpu_;                                                     \
    if (!::tiergate::kernels::cuda::device_available(&why_no_gpu_))              \
      GTEST_SKIP() << "needs a CUDA GPU (" << why_no_gpu_ << ")";                \
  } while (0)

namespace tiergate::kernels::testing {

// What kernels/cuda/batch_ops.h's fill_uniform writes at index i, in fp32 (before the rounding
// to F16/BF16): the host's replay of its documented formula, to check it and to build the same
// dummy weights on the host.
inline float uniform_fill_value(std::uint64_t seed, std::uint64_t i, float lo, float hi) {
  const std::uint64_t h = mix64(seed * 0x9e3779b97f4a7c15ull + i);
  const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
  return std::fma(hi - lo, u, lo);
}

// Device copies ordered on `stream`, with the launches around them.
template <class T>
cuda::DeviceBuffer to_device(const std::vector<T>& host, const cuda::Stream& stream) {
  cuda::DeviceBuffer d(std::max<std::size_t>(host.size() * sizeof(T), 16));
  d.upload(host.data(), host.size() * sizeof(T), stream.handle());
  return d;
}

template <class T>
std::vector<T> to_host(const cuda::DeviceBuffer& d, std::size_t n, const cuda::Stream& stream) {
  std::vector<T> host(n);
  d.download(host.data(), n * sizeof(T), stream.handle());
  return host;
}

// Element-by-element bit equality; a failure counts the differing elements and shows the first few.
template <class T>
void expect_bits_equal(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  std::size_t bad = 0;
  std::ostringstream first;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0 && bad++ < 5) {
      first << "\n  [" << i << "] got 0x" << std::hex << +got[i] << " want 0x" << +want[i] << std::dec;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " elements differ" << first.str();
}

inline std::vector<std::uint32_t> float_bits(const std::vector<float>& v) {
  std::vector<std::uint32_t> b(v.size());
  std::memcpy(b.data(), v.data(), v.size() * sizeof(float));
  return b;
}

}  // namespace tiergate::kernels::testing
