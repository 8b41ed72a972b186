// Internal to kernels/cuda/*.cu: the launch-status helper every launcher ends with. fp16/bf16
// conversions come from kernels/cpu/fp16.h (host and device), so GPU and CPU write the same bits.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "kernels/cpu/fp16.h"
#include "kernels/cuda/device.h"

namespace tiergate::kernels::cuda::detail {

// A launcher's outcome: the launch error, if any, named after the kernel.
inline Status launch_status(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status::success();
  return Status::failure(std::string(kernel) + ": " + cudaGetErrorString(e));
}

}  // namespace tiergate::kernels::cuda::detail
