// splitmix64's finaliser: a bijection on 64 bits with full avalanche. The one hash behind the
// sampling RNG (kernels/sampling.h), dummy-weight fills (kernels/cuda/batch_ops.cu) and the prefix
// cache's block hashes (engine/block_manager.cpp); callable from host and device code.
#pragma once

#include <cstdint>

#include "kernels/host_device.h"

namespace tiergate::kernels {

TG_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace tiergate::kernels
