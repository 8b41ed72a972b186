// The neon-dotprod level: the neon level compiled with +dotprod, so byte dot products are SDOT.
#define TG_ISA_NS neon_dotprod_isa
#include "kernels/cpu/isa/lane_kernels.h"
#include "kernels/cpu/isa/neon_lanes.h"

namespace tiergate::kernels::cpu::neon_dotprod_isa {

const IsaKernels& table() {
  static const IsaKernels t = lane_table<NeonLanes>(CpuIsa::kNeonDot);
  return t;
}

}  // namespace tiergate::kernels::cpu::neon_dotprod_isa
