// The neon level (AArch64 Advanced SIMD): lane_kernels.h over two 128-bit registers per lane set.
#define TG_ISA_NS neon_isa
#include "kernels/cpu/isa/lane_kernels.h"
#include "kernels/cpu/isa/neon_lanes.h"

namespace tiergate::kernels::cpu::neon_isa {

const IsaKernels& table() {
  static const IsaKernels t = lane_table<NeonLanes>(CpuIsa::kNeon);
  return t;
}

}  // namespace tiergate::kernels::cpu::neon_isa
