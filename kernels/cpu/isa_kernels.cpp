#include "kernels/cpu/isa_kernels.h"

#include "kernels/check.h"

namespace tiergate::kernels::cpu {

// Each level's table, defined in kernels/cpu/isa/<level>.cpp.
namespace scalar_isa { const IsaKernels& table(); }
#if defined(__x86_64__)
namespace avx2_isa { const IsaKernels& table(); }
namespace avx512_isa { const IsaKernels& table(); }
#elif defined(__aarch64__)
namespace neon_isa { const IsaKernels& table(); }
namespace neon_dotprod_isa { const IsaKernels& table(); }
#endif

const IsaKernels& isa_kernels(CpuIsa isa) {
  TG_CHECK(cpu_supports(isa));  // a level's table is built with its own instructions
  switch (isa) {
    case CpuIsa::kScalar: return scalar_isa::table();
#if defined(__x86_64__)
    case CpuIsa::kAvx2: return avx2_isa::table();
    case CpuIsa::kAvx512: return avx512_isa::table();
#elif defined(__aarch64__)
    case CpuIsa::kNeon: return neon_isa::table();
    case CpuIsa::kNeonDot: return neon_dotprod_isa::table();
#endif
    default: break;
  }
  TG_CHECK(false && "ISA level not compiled into this binary");
  return scalar_isa::table();
}

const IsaKernels& active_kernels() {
  static const IsaKernels& k = isa_kernels(active_isa());
  return k;
}

}  // namespace tiergate::kernels::cpu
