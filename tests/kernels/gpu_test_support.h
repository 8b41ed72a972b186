// Shared by the GPU kernel tests: skip with the reason where no CUDA device is usable, so the
// suite passes on machines without a GPU and says why its `gpu` tests did not run.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "kernels/cuda/device.h"

#define TG_REQUIRE_GPU()                                                         \
  do {                                                                           \
    std::string why_no_gpu_;                                                     \
    if (!::tiergate::kernels::cuda::device_available(&why_no_gpu_))              \
      GTEST_SKIP() << "needs a CUDA GPU (" << why_no_gpu_ << ")";                \
  } while (0)

#include <cmath>
#include <cstdint>

#include "kernels/mix64.h"

namespace tiergate::kernels::testing {

// What kernels/cuda/batch_ops.h's fill_uniform writes at index i, in fp32 (before the rounding
// to F16/BF16): the host's replay of its documented formula, to check it and to build the same
// dummy weights on the host.
inline float uniform_fill_value(std::uint64_t seed, std::uint64_t i, float lo, float hi) {
  const std::uint64_t h = mix64(seed * 0x9e3779b97f4a7c15ull + i);
  const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
  return std::fma(hi - lo, u, lo);
}

}  // namespace tiergate::kernels::testing
