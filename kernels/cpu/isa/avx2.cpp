// The avx2 level (AVX2 + FMA + F16C): lane_kernels.h over 256-bit registers, with the quantised
// matmul on weights packed eight rows at a time where they are (x86_packed.h).
#define TG_ISA_NS avx2_isa
#include "kernels/cpu/isa/lane_kernels.h"
#include "kernels/cpu/isa/avx2_lanes.h"
#include "kernels/cpu/isa/x86_packed.h"
#include "kernels/cpu/isa/x86_quantize.h"

namespace tiergate::kernels::cpu::avx2_isa {
namespace {

__m256i quad(const std::int8_t* qs, std::size_t j) { return _mm256_set1_epi32(act_quad(qs, j)); }
__m256 load_h8(const std::uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// x86_packed.h's group kernels: 8 rows (one per 32-bit lane) against T tokens.
struct Groups {
  static constexpr std::size_t kRows = 8;

  // A block's byte products sum in int16 (8 maddubs results of at most 2 · 15 · 128 each: no
  // overflow), then once into int32.
  template <std::size_t T>
  static void q4_1(const QuantMatmulView& v, const PackedQ4_1<kRows>* g, std::size_t r, std::size_t t0) {
    const std::size_t nb = v.cols / kQuantBlock;
    const TokenSpan<T, BlockQ8_1> tok(v, t0);
    __m256 acc[T], mins[T];
    for (std::size_t t = 0; t < T; ++t) acc[t] = mins[t] = _mm256_setzero_ps();
    const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    for (std::size_t i = 0; i < nb; ++i) {
      __m256i sum[T];
      for (std::size_t t = 0; t < T; ++t) sum[t] = _mm256_setzero_si256();
#pragma GCC unroll 1
      for (std::size_t j = 0; j < 4; ++j) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[i].qs[j]));
        const __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
        for (std::size_t t = 0; t < T; ++t) {
          sum[t] = _mm256_add_epi16(sum[t], _mm256_maddubs_epi16(lo, quad(tok.y[t][i].qs, j)));
          sum[t] = _mm256_add_epi16(sum[t], _mm256_maddubs_epi16(hi, quad(tok.y[t][i].qs, j + 4)));
        }
      }
      const __m256 d = load_h8(g[i].d);
      for (std::size_t t = 0; t < T; ++t) {
        const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(sum[t], ones));
        acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(tok.d[t][i])), s, acc[t]);
      }
    }
    // The minimum's sums in a pass of their own, which leaves the registers above to the products.
    for (std::size_t i = 0; i < nb; ++i) {
      const __m256 m = load_h8(g[i].m);
      for (std::size_t t = 0; t < T; ++t) mins[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(tok.d[t][nb + i]), mins[t]);
    }
    for (std::size_t t = 0; t < T; ++t) _mm256_storeu_ps(v.y + (t0 + t) * v.rows + r, _mm256_add_ps(acc[t], mins[t]));
  }

  // |w| times y with w's sign; the int16 pairs (at most 2 · 128 · 127) widen at once to int32.
  template <std::size_t T>
  static void q8_0(const QuantMatmulView& v, const PackedQ8_0<kRows>* g, std::size_t r, std::size_t t0) {
    const std::size_t nb = v.cols / kQuantBlock;
    const TokenSpan<T, BlockQ8_0> tok(v, t0);
    __m256 acc[T];
    for (std::size_t t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (std::size_t i = 0; i < nb; ++i) {
      __m256i sum[T];
      for (std::size_t t = 0; t < T; ++t) sum[t] = _mm256_setzero_si256();
#pragma GCC unroll 1
      for (std::size_t j = 0; j < 8; ++j) {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g[i].qs[j]));
        const __m256i aw = _mm256_abs_epi8(w);  // |-128| reads as 128 unsigned
        for (std::size_t t = 0; t < T; ++t) {
          const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(quad(tok.y[t][i].qs, j), w));
          sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(p, ones));
        }
      }
      const __m256 d = load_h8(g[i].d);
      for (std::size_t t = 0; t < T; ++t) {
        acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(tok.d[t][i])), _mm256_cvtepi32_ps(sum[t]), acc[t]);
      }
    }
    for (std::size_t t = 0; t < T; ++t) _mm256_storeu_ps(v.y + (t0 + t) * v.rows + r, acc[t]);
  }
};

}  // namespace

const IsaKernels& table() {
  static const IsaKernels t = [] {
    IsaKernels k = lane_table<Avx2Lanes>(CpuIsa::kAvx2);
    k.quantize_activations = quantize_activations_avx2;
    k.quant_rows = quant_rows_packed<Groups>;
    k.weight_pack_bytes = weight_pack_bytes<Groups::kRows>;
    k.pack_weight = pack_weight<Groups::kRows, false>;
    return k;
  }();
  return t;
}

}  // namespace tiergate::kernels::cpu::avx2_isa
