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
