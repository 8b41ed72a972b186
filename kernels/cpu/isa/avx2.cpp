// The avx2 level (AVX2 + FMA + F16C): lane_kernels.h over 256-bit registers, with the quantised
// matmul on weights packed eight rows at a time where they are (x86_packed.h).
#define TG_ISA_NS avx2_isa
#include "kernels/cpu/isa/lane_kernels.h"
#include "kernels/cpu/isa/avx2_lanes.h"
#include "kernels/cpu/isa/x86_packed.h"
#include "kernels/cpu/isa/x86_quantize.h"

namespace tiergate::kernels::cpu::avx2_isa {
namespace {

void quant_rows_avx2(const QuantMatmulView& v, std::size_t r0, std::size_t r1) {
  if (has_packed(v)) return packed_rows(v, r0, r1);
  quant_rows<Avx2Lanes>(v, r0, r1);
}

}  // namespace

const IsaKernels& table() {
  static const IsaKernels t = [] {
    IsaKernels k = lane_table<Avx2Lanes>(CpuIsa::kAvx2);
    k.quantize_activations = quantize_activations_avx2;
    k.quant_rows = quant_rows_avx2;
    k.weight_pack_bytes = weight_pack_bytes;
    k.pack_weight = pack_weight;
    return k;
  }();
  return t;
}

}  // namespace tiergate::kernels::cpu::avx2_isa
