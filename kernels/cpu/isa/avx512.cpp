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
constexpr std::size_t kRows = 16;  // rows per packed group: one 32-bit lane each
using PackedQ4 = PackedQ4_1<kRows>;
using PackedQ8 = PackedQ8_0<kRows>;

__m512i quad(const std::int8_t* qs, std::size_t j) { return _mm512_set1_epi32(act_quad(qs, j)); }
__m512 load_h16(const std::uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

// The 16 rows of one packed group against tokens t0 .. t0 + T - 1, each block's byte products
// summed in int32 by vpdpbusd (two chains per token, the low and the high nibbles).
template <std::size_t T>
void group_q4_1(const QuantMatmulView& v, const PackedQ4* g, std::size_t r, std::size_t t0) {
  const std::size_t nb = v.cols / kQuantBlock;
  const BlockQ8_1* y[T];
  const float* sc[T];
  __m512 acc[T], mins[T];
  for (std::size_t t = 0; t < T; ++t) {
    y[t] = reinterpret_cast<const BlockQ8_1*>(v.act + (t0 + t) * v.act_row_bytes);
    sc[t] = v.scales + 2 * nb * (t0 + t);
    acc[t] = mins[t] = _mm512_setzero_ps();
  }
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (std::size_t i = 0; i < nb; ++i) {
    const PackedQ4& b = g[i];
    __m512i sum_lo[T], sum_hi[T];
    for (std::size_t t = 0; t < T; ++t) sum_lo[t] = sum_hi[t] = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (std::size_t j = 0; j < 4; ++j) {
      const __m512i q = _mm512_loadu_si512(b.qs[j]);
      const __m512i lo = _mm512_and_si512(q, low4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
      for (std::size_t t = 0; t < T; ++t) {
        sum_lo[t] = _mm512_dpbusd_epi32(sum_lo[t], lo, quad(y[t][i].qs, j));
        sum_hi[t] = _mm512_dpbusd_epi32(sum_hi[t], hi, quad(y[t][i].qs, j + 4));
      }
    }
    const __m512 d = load_h16(b.d), m = load_h16(b.m);
    for (std::size_t t = 0; t < T; ++t) {
      const __m512 s = _mm512_cvtepi32_ps(_mm512_add_epi32(sum_lo[t], sum_hi[t]));
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(sc[t][i])), s, acc[t]);
      mins[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(sc[t][nb + i]), mins[t]);
    }
  }
  for (std::size_t t = 0; t < T; ++t) _mm512_storeu_ps(v.y + (t0 + t) * v.rows + r, _mm512_add_ps(acc[t], mins[t]));
}

// Q8_0, packed as w + 128 (unsigned): vpdpbusd's sum, started at -128 · Σ y (pack()'s
// corrections), is the exact Σ w · y.
template <std::size_t T>
void group_q8_0(const QuantMatmulView& v, const PackedQ8* g, std::size_t r, std::size_t t0) {
  const std::size_t nb = v.cols / kQuantBlock;
  const BlockQ8_0* y[T];
  const float* sc[T];
  const std::int32_t* corr[T];
  __m512 acc[T];
  for (std::size_t t = 0; t < T; ++t) {
    y[t] = reinterpret_cast<const BlockQ8_0*>(v.act + (t0 + t) * v.act_row_bytes);
    sc[t] = v.scales + 2 * nb * (t0 + t);
    corr[t] = reinterpret_cast<const std::int32_t*>(v.packed) + nb * (t0 + t);
    acc[t] = _mm512_setzero_ps();
  }
  for (std::size_t i = 0; i < nb; ++i) {
    const PackedQ8& b = g[i];
    __m512i sum_a[T], sum_b[T];
    for (std::size_t t = 0; t < T; ++t) sum_a[t] = _mm512_set1_epi32(corr[t][i]), sum_b[t] = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (std::size_t j = 0; j < 8; j += 2) {
      const __m512i wa = _mm512_loadu_si512(b.qs[j]), wb = _mm512_loadu_si512(b.qs[j + 1]);
      for (std::size_t t = 0; t < T; ++t) {
        sum_a[t] = _mm512_dpbusd_epi32(sum_a[t], wa, quad(y[t][i].qs, j));
        sum_b[t] = _mm512_dpbusd_epi32(sum_b[t], wb, quad(y[t][i].qs, j + 1));
      }
    }
    const __m512 d = load_h16(b.d);
    for (std::size_t t = 0; t < T; ++t) {
      const __m512 s = _mm512_cvtepi32_ps(_mm512_add_epi32(sum_a[t], sum_b[t]));
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(sc[t][i])), s, acc[t]);
    }
  }
  for (std::size_t t = 0; t < T; ++t) _mm512_storeu_ps(v.y + (t0 + t) * v.rows + r, acc[t]);
}

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

// Rows r .. r+15 of a packed weight, four tokens at a time.
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

void quant_rows_512(const QuantMatmulView& v, std::size_t r0, std::size_t r1) {
  if (has_packed(v)) return packed_rows<kRows>(v, r0, r1, group_rows);
  quant_rows<V>(v, r0, r1);
}

}  // namespace

const IsaKernels& table() {
  static const IsaKernels t = [] {
    IsaKernels k = lane_table<V>(CpuIsa::kAvx512);
    k.quantize_activations = quantize_activations_avx2;
    k.pack_bytes = pack_bytes;
    k.pack = pack;
    k.quant_rows = quant_rows_512;
    k.weight_pack_bytes = weight_pack_bytes<kRows>;
    k.pack_weight = pack_weight<kRows, true>;
    return k;
  }();
  return t;
}

}  // namespace tiergate::kernels::cpu::avx512_isa
