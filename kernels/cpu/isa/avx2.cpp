// The avx2 level (AVX2 + FMA + F16C): lane_kernels.h over 256-bit registers, with the quantised
// matmul on weights packed eight rows at a time where they are (x86_packed.h).
#define TG_ISA_NS avx2_isa
#include "kernels/cpu/isa/lane_kernels.h"
#include "kernels/cpu/isa/avx2_lanes.h"
#include "kernels/cpu/isa/x86_packed.h"
#include "kernels/cpu/isa/x86_quantize.h"

namespace tiergate::kernels::cpu::avx2_isa {
namespace {

constexpr std::size_t kRows = 8;  // rows per packed group: one 32-bit lane each
using PackedQ4 = PackedQ4_1<kRows>;
using PackedQ8 = PackedQ8_0<kRows>;

__m256i quad(const std::int8_t* qs, std::size_t j) { return _mm256_set1_epi32(act_quad(qs, j)); }

// The 8 rows of one packed group against tokens t0 .. t0 + T - 1. A block's byte products sum in
// int16 (8 maddubs results of at most 2 · 15 · 128 each: no overflow), then once into int32.
template <std::size_t T>
void group_q4_1(const QuantMatmulView& v, const PackedQ4* g, std::size_t r, std::size_t t0) {
  const std::size_t nb = v.cols / kQuantBlock;
  const BlockQ8_1* y[T];
  const float* sc[T];
  __m256 acc[T], mins[T];
  for (std::size_t t = 0; t < T; ++t) {
    y[t] = reinterpret_cast<const BlockQ8_1*>(v.act + (t0 + t) * v.act_row_bytes);
    sc[t] = v.scales + 2 * nb * (t0 + t);
    acc[t] = mins[t] = _mm256_setzero_ps();
  }
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  for (std::size_t i = 0; i < nb; ++i) {
    const PackedQ4& b = g[i];
    __m256i sum[T];
    for (std::size_t t = 0; t < T; ++t) sum[t] = _mm256_setzero_si256();
#pragma GCC unroll 1
    for (std::size_t j = 0; j < 4; ++j) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs[j]));
      const __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
      for (std::size_t t = 0; t < T; ++t) {
        sum[t] = _mm256_add_epi16(sum[t], _mm256_maddubs_epi16(lo, quad(y[t][i].qs, j)));
        sum[t] = _mm256_add_epi16(sum[t], _mm256_maddubs_epi16(hi, quad(y[t][i].qs, j + 4)));
      }
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.d)));
    for (std::size_t t = 0; t < T; ++t) {
      const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(sum[t], ones));
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(sc[t][i])), s, acc[t]);
    }
  }
  for (std::size_t i = 0; i < nb; ++i) {
    const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[i].m)));
    for (std::size_t t = 0; t < T; ++t) mins[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(sc[t][nb + i]), mins[t]);
  }
  for (std::size_t t = 0; t < T; ++t) _mm256_storeu_ps(v.y + (t0 + t) * v.rows + r, _mm256_add_ps(acc[t], mins[t]));
}

// Q8_0: |w| times y with w's sign, int16 pairs (at most 2 · 128 · 127) widened at once to int32.
template <std::size_t T>
void group_q8_0(const QuantMatmulView& v, const PackedQ8* g, std::size_t r, std::size_t t0) {
  const std::size_t nb = v.cols / kQuantBlock;
  const BlockQ8_0* y[T];
  const float* sc[T];
  __m256 acc[T];
  for (std::size_t t = 0; t < T; ++t) {
    y[t] = reinterpret_cast<const BlockQ8_0*>(v.act + (t0 + t) * v.act_row_bytes);
    sc[t] = v.scales + 2 * nb * (t0 + t);
    acc[t] = _mm256_setzero_ps();
  }
  const __m256i ones = _mm256_set1_epi16(1);
  for (std::size_t i = 0; i < nb; ++i) {
    const PackedQ8& b = g[i];
    __m256i sum[T];
    for (std::size_t t = 0; t < T; ++t) sum[t] = _mm256_setzero_si256();
#pragma GCC unroll 1
    for (std::size_t j = 0; j < 8; ++j) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs[j]));
      const __m256i aw = _mm256_abs_epi8(w);  // |-128| reads as 128 unsigned
      for (std::size_t t = 0; t < T; ++t) {
        const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(quad(y[t][i].qs, j), w));
        sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(p, ones));
      }
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.d)));
    for (std::size_t t = 0; t < T; ++t) {
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(sc[t][i])), _mm256_cvtepi32_ps(sum[t]), acc[t]);
    }
  }
  for (std::size_t t = 0; t < T; ++t) _mm256_storeu_ps(v.y + (t0 + t) * v.rows + r, acc[t]);
}

// Rows r .. r+7 of a packed weight, four tokens at a time.
void group_rows(const QuantMatmulView& v, std::size_t r) {
  const std::size_t nb = v.cols / kQuantBlock, g = r / kRows;
  for (std::size_t t0 = 0; t0 < v.tokens; t0 += 4) {
    with_tokens(v.tokens - t0, [&]<std::size_t T>() {
      if (v.type == DType::kQ4_1) {
        group_q4_1<T>(v, reinterpret_cast<const PackedQ4*>(v.packed_weight) + g * nb, r, t0);
      } else {
        group_q8_0<T>(v, reinterpret_cast<const PackedQ8*>(v.packed_weight) + g * nb, r, t0);
      }
    });
  }
}

void quant_rows_avx2(const QuantMatmulView& v, std::size_t r0, std::size_t r1) {
  if (has_packed(v)) return packed_rows<kRows>(v, r0, r1, group_rows);
  quant_rows<Avx2Lanes>(v, r0, r1);
}

}  // namespace

const IsaKernels& table() {
  static const IsaKernels t = [] {
    IsaKernels k = lane_table<Avx2Lanes>(CpuIsa::kAvx2);
    k.quantize_activations = quantize_activations_avx2;
    k.quant_rows = quant_rows_avx2;
    k.weight_pack_bytes = weight_pack_bytes<kRows>;
    k.pack_weight = pack_weight<kRows, false>;
    return k;
  }();
  return t;
}

}  // namespace tiergate::kernels::cpu::avx2_isa
