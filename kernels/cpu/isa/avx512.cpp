// The avx512 level (AVX-512 F/BW/DQ/VL with VNNI): lane_kernels.h over 256-bit registers with
// vpdpbusd byte dot products, and the quantised matmul on weights packed sixteen rows at a time
// (x86_packed.h), one row in each 32-bit lane of a 512-bit register.
#define TG_ISA_NS avx512_isa
#include "kernels/cpu/isa/lane_kernels.h"
#include "kernels/cpu/isa/avx2_lanes.h"
#include "kernels/cpu/isa/x86_packed.h"
#include "kernels/cpu/isa/x86_quantize.h"

namespace tiergate::kernels::cpu::avx512_isa {
namespace {

using V = Avx2Lanes;

__m512i quad(const std::int8_t* qs, std::size_t j) { return _mm512_set1_epi32(act_quad(qs, j)); }
__m512 load_h16(const std::uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

// x86_packed.h's group kernels: 16 rows (one per 32-bit lane) against T tokens, each block's byte
// products summed in int32 by vpdpbusd in two chains per token.
struct Groups {
  static constexpr std::size_t kRows = 16;

  template <std::size_t T>
  static void q4_1(const QuantMatmulView& v, const PackedQ4_1<kRows>* g, std::size_t r, std::size_t t0) {
    const std::size_t nb = v.cols / kQuantBlock;
    const TokenSpan<T, BlockQ8_1> tok(v, t0);
    __m512 acc[T], mins[T];
    for (std::size_t t = 0; t < T; ++t) acc[t] = mins[t] = _mm512_setzero_ps();
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    for (std::size_t i = 0; i < nb; ++i) {
      __m512i sum_lo[T], sum_hi[T];  // the low and the high nibbles' products
      for (std::size_t t = 0; t < T; ++t) sum_lo[t] = sum_hi[t] = _mm512_setzero_si512();
#pragma GCC unroll 1
      for (std::size_t j = 0; j < 4; ++j) {
        const __m512i q = _mm512_loadu_si512(g[i].qs[j]);
        const __m512i lo = _mm512_and_si512(q, low4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
        for (std::size_t t = 0; t < T; ++t) {
          sum_lo[t] = _mm512_dpbusd_epi32(sum_lo[t], lo, quad(tok.y[t][i].qs, j));
          sum_hi[t] = _mm512_dpbusd_epi32(sum_hi[t], hi, quad(tok.y[t][i].qs, j + 4));
        }
      }
      const __m512 d = load_h16(g[i].d), m = load_h16(g[i].m);
      for (std::size_t t = 0; t < T; ++t) {
        const __m512 s = _mm512_cvtepi32_ps(_mm512_add_epi32(sum_lo[t], sum_hi[t]));
        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(tok.d[t][i])), s, acc[t]);
        mins[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(tok.d[t][nb + i]), mins[t]);
      }
    }
    for (std::size_t t = 0; t < T; ++t) _mm512_storeu_ps(v.y + (t0 + t) * v.rows + r, _mm512_add_ps(acc[t], mins[t]));
  }

  // Packed as w + 128 (unsigned): vpdpbusd's sum, started at -128 · Σ y (pack()'s corrections),
  // is the exact Σ w · y.
  template <std::size_t T>
  static void q8_0(const QuantMatmulView& v, const PackedQ8_0<kRows>* g, std::size_t r, std::size_t t0) {
    const std::size_t nb = v.cols / kQuantBlock;
    const TokenSpan<T, BlockQ8_0> tok(v, t0);
    const auto* corr = reinterpret_cast<const std::int32_t*>(v.packed) + nb * t0;
    __m512 acc[T];
    for (std::size_t t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    for (std::size_t i = 0; i < nb; ++i) {
      __m512i sum_a[T], sum_b[T];  // even and odd j
      for (std::size_t t = 0; t < T; ++t) sum_a[t] = _mm512_set1_epi32(corr[t * nb + i]), sum_b[t] = _mm512_setzero_si512();
#pragma GCC unroll 1
      for (std::size_t j = 0; j < 8; j += 2) {
        const __m512i wa = _mm512_loadu_si512(g[i].qs[j]), wb = _mm512_loadu_si512(g[i].qs[j + 1]);
        for (std::size_t t = 0; t < T; ++t) {
          sum_a[t] = _mm512_dpbusd_epi32(sum_a[t], wa, quad(tok.y[t][i].qs, j));
          sum_b[t] = _mm512_dpbusd_epi32(sum_b[t], wb, quad(tok.y[t][i].qs, j + 1));
        }
      }
      const __m512 d = load_h16(g[i].d);
      for (std::size_t t = 0; t < T; ++t) {
        const __m512 s = _mm512_cvtepi32_ps(_mm512_add_epi32(sum_a[t], sum_b[t]));
        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(tok.d[t][i])), s, acc[t]);
      }
    }
    for (std::size_t t = 0; t < T; ++t) _mm512_storeu_ps(v.y + (t0 + t) * v.rows + r, acc[t]);
  }
};

// The per-call activation pack: for a packed Q8_0 weight, -128 · Σ y of every token's blocks as
// [token][block] int32.
bool needs_corrections(const QuantMatmulView& v) { return has_packed(v) && v.type == DType::kQ8_0; }

std::size_t pack_bytes(const QuantMatmulView& v) {
  return needs_corrections(v) ? v.tokens * (v.cols / kQuantBlock) * sizeof(std::int32_t) : 0;
}

void pack(const QuantMatmulView& v, std::byte* buffer) {
  if (!needs_corrections(v)) return;
  const std::size_t nb = v.cols / kQuantBlock;
  auto* corr = reinterpret_cast<std::int32_t*>(buffer);
  const __m256i ones = _mm256_set1_epi8(1);
  for (std::size_t t = 0; t < v.tokens; ++t) {
    const auto* y = reinterpret_cast<const BlockQ8_0*>(v.act + t * v.act_row_bytes);
    for (std::size_t i = 0; i < nb; ++i) corr[t * nb + i] = -128 * V::hsum_i(V::dot_us(ones, V::load_b(y[i].qs)));
  }
}

}  // namespace

const IsaKernels& table() {
  static const IsaKernels t = [] {
    IsaKernels k = lane_table<V>(CpuIsa::kAvx512);
    k.quantize_activations = quantize_activations_avx2;
    k.pack_bytes = pack_bytes;
    k.pack = pack;
    k.quant_rows = quant_rows_packed<Groups>;
    k.weight_pack_bytes = weight_pack_bytes<Groups::kRows>;
    k.pack_weight = pack_weight<Groups::kRows, true>;
    return k;
  }();
  return t;
}

}  // namespace tiergate::kernels::cpu::avx512_isa
