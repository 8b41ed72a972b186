// The avx2 level (AVX2 + FMA + F16C): lane_kernels.h over 256-bit registers.
#define TG_ISA_NS avx2_isa
#include "kernels/cpu/isa/lane_kernels.h"
#include "kernels/cpu/isa/avx2_lanes.h"

namespace tiergate::kernels::cpu::avx2_isa {

const IsaKernels& table() {
  static const IsaKernels t = lane_table<Avx2Lanes>(CpuIsa::kAvx2);
  return t;
}

}  // namespace tiergate::kernels::cpu::avx2_isa
