// The avx2 level (AVX2 + FMA + F16C): lane_kernels.h over 256-bit registers, with the quantised
// matmul on weights packed eight rows at a time where they are (x86_packed.h).
#define TG_ISA_NS avx2_isa
#include "kernels/cpu/isa/lane_kernels.h"
#include "kernels/cpu/isa/avx2_lanes.h"
#include "kernels/cpu/isa/x86_packed.h"
#include "kernels/cpu/isa/x86_quantize.h"

namespace tiergate::kernels::cpu::avx2_isa {
namespace {

// Lanes [s_a x4 | s_b x4] of the eight rows' scales, for the row pair (a, b) = (2k, 2k + 1).
__m256 pair_scale(__m256 scales, int k) {
  return _mm256_permutevar8x32_ps(scales, _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1, 2 * k + 1,
                                                            2 * k + 1, 2 * k + 1));
}

// A row pair's accumulators hold [a lanes 0..3 | b lanes 0..3] (the low nibbles' products) and
// [a lanes 4..7 | b lanes 4..7] (the high ones'): adding them is the first step of each row's sum.
void store_pair(__m256 lo, __m256 hi, float* out) {
  const __m256 folded = _mm256_add_ps(lo, hi);
  out[0] = hsum_folded(_mm256_castps256_ps128(folded));
  out[1] = hsum_folded(_mm256_extractf128_ps(folded, 1));
}

void group_q4_1(const PackedQ4_1x8* g, const BlockQ8_1* y, const float* ad, const float* as, std::size_t nb,
                float* out) {
  using V = Avx2Lanes;
  __m256 acc_lo[4], acc_hi[4];
  for (int k = 0; k < 4; ++k) acc_lo[k] = acc_hi[k] = _mm256_setzero_ps();
  __m256 mins = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (std::size_t i = 0; i < nb; ++i) {
    const PackedQ4_1x8& b = g[i];
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.d)));
    const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.m)));
    mins = _mm256_add_ps(mins, _mm256_mul_ps(m, _mm256_set1_ps(as[i])));
    const __m256 scales = _mm256_mul_ps(d, _mm256_set1_ps(ad[i]));
    // Elements 0..15 of the token's block against the low nibbles, 16..31 against the high ones.
    const __m256i ylo = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y[i].qs)));
    const __m256i yhi = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y[i].qs + 16)));
    for (int k = 0; k < 4; ++k) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs[2 * k]));
      const __m256i lo = _mm256_and_si256(q, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
      const __m256 s = pair_scale(scales, k);
      acc_lo[k] = _mm256_fmadd_ps(s, V::cvt(V::dot_us(lo, ylo)), acc_lo[k]);
      acc_hi[k] = _mm256_fmadd_ps(s, V::cvt(V::dot_us(hi, yhi)), acc_hi[k]);
    }
  }
  alignas(32) float m[kPackRows];
  _mm256_store_ps(m, mins);
  for (int k = 0; k < 4; ++k) {
    store_pair(acc_lo[k], acc_hi[k], out + 2 * k);
    out[2 * k] += m[2 * k];
    out[2 * k + 1] += m[2 * k + 1];
  }
}

void group_q8_0(const PackedQ8_0x8* g, const BlockQ8_0* y, const float* ad, std::size_t nb, float* out) {
  using V = Avx2Lanes;
  // One accumulator per row; lanes as the reference's.
  __m256 acc[kPackRows];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const PackedQ8_0x8& b = g[i];
    alignas(32) float scales[kPackRows];
    _mm256_store_ps(scales,
                    _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.d))),
                                  _mm256_set1_ps(ad[i])));
    const __m256i qy = V::load_b(y[i].qs);
    for (std::size_t r = 0; r < kPackRows; ++r) {
      const V::SignedW w = V::signed_weights(V::load_b(b.qs[r]));
      acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(scales + r), V::cvt(V::dot_signed(w, qy)), acc[r]);
    }
  }
  for (std::size_t r = 0; r < kPackRows; ++r) out[r] = V::hsum(acc[r]);
}

// Rows r .. r+7 of a packed weight, token by token.
void group_rows(const QuantMatmulView& v, std::size_t r) {
  const std::size_t nb = v.cols / kQuantBlock, g = r / kPackRows;
  for (std::size_t t = 0; t < v.tokens; ++t) {
    const std::byte* act = v.act + t * v.act_row_bytes;
    const float* d = v.scales + 2 * nb * t;
    if (v.type == DType::kQ4_1) {
      group_q4_1(reinterpret_cast<const PackedQ4_1x8*>(v.packed_weight) + g * nb, reinterpret_cast<const BlockQ8_1*>(act), d,
                 d + nb, nb, v.y + t * v.rows + r);
    } else {
      group_q8_0(reinterpret_cast<const PackedQ8_0x8*>(v.packed_weight) + g * nb, reinterpret_cast<const BlockQ8_0*>(act), d,
                 nb, v.y + t * v.rows + r);
    }
  }
}

void quant_rows_avx2(const QuantMatmulView& v, std::size_t r0, std::size_t r1) {
  if (has_packed(v)) return packed_rows(v, r0, r1, group_rows);
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
