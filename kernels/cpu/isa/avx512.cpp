// The avx512 level (AVX-512 F/BW/DQ/VL with VNNI): lane_kernels.h over 256-bit registers with
// vpdpbusd byte dot products, plus 512-bit matmul kernels that put two (row, token) pairs side by
// side, one in each 256-bit half. Every lane of those sees the operations of lane_kernels.h's
// row_q4_1 / row_signed in the same order, so the results are the same bits; only the throughput
// doubles. Weights packed eight rows at a time go to x86_packed.h instead.
#define TG_ISA_NS avx512_isa
#include "kernels/cpu/isa/lane_kernels.h"
#include "kernels/cpu/isa/avx2_lanes.h"
#include "kernels/cpu/isa/x86_packed.h"
#include "kernels/cpu/isa/x86_quantize.h"

namespace tiergate::kernels::cpu::avx512_isa {
namespace {

using V = Avx2Lanes;

__m512 halves(float lo, float hi) { return _mm512_insertf32x8(_mm512_set1_ps(lo), _mm256_set1_ps(hi), 1); }
__m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }
void hsum_halves(__m512 v, float& lo, float& hi) {
  lo = V::hsum(_mm512_castps512_ps256(v));
  hi = V::hsum(_mm512_extractf32x8_ps(v, 1));
}
__m512 dot_u8s8_512(__m512i u, __m512i s) { return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s)); }
// Signed·signed via |x| · (y with x's sign); lanes where x is 0 contribute 0 whatever y holds.
__m512 dot_i8_512(__m512i x, __m512i y) {
  const __m512i sy = _mm512_mask_sub_epi8(y, _mm512_movepi8_mask(x), _mm512_setzero_si512(), y);
  return dot_u8s8_512(_mm512_abs_epi8(x), sy);
}

// Rows a and b of the weight against one token (decode at batch 1). ad, as: the token's d and s.
void two_rows_q4_1(const BlockQ4_1* wa, const BlockQ4_1* wb, const BlockQ8_1* y, const float* ad, const float* as,
                   std::size_t nb, float* out) {
  __m512 acc = _mm512_setzero_ps();
  float mins_a = 0, mins_b = 0;
  for (std::size_t i = 0; i < nb; ++i) {
    const float yd = ad[i], ys = as[i];
    mins_a = mins_a + V::h2f(wa[i].m) * ys;
    mins_b = mins_b + V::h2f(wb[i].m) * ys;
    const __m256i qy = V::load_b(y[i].qs);
    const __m512 p = dot_u8s8_512(join(V::nibbles(wa[i].qs), V::nibbles(wb[i].qs)), join(qy, qy));
    acc = _mm512_fmadd_ps(halves(V::h2f(wa[i].d) * yd, V::h2f(wb[i].d) * yd), p, acc);
  }
  hsum_halves(acc, out[0], out[1]);
  out[0] += mins_a;
  out[1] += mins_b;
}

void two_rows_q8_0(const BlockQ8_0* wa, const BlockQ8_0* wb, const BlockQ8_0* y, const float* ad, std::size_t nb,
                   float* out) {
  __m512 acc = _mm512_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const float yd = ad[i];
    const __m256i qy = V::load_b(y[i].qs);
    const __m512i qx = join(V::load_b(wa[i].qs), V::load_b(wb[i].qs));
    acc = _mm512_fmadd_ps(halves(V::h2f(wa[i].d) * yd, V::h2f(wb[i].d) * yd), dot_i8_512(qx, join(qy, qy)), acc);
  }
  hsum_halves(acc, out[0], out[1]);
}

// Two tokens' activation block side by side, ready for one 512-bit load each: their int8 values
// and their scales broadcast over each half.
struct alignas(64) PackedPair {
  std::int8_t qs[64];
  float d[16];
};

bool paired(const QuantMatmulView& v) { return v.tokens >= 2 && (v.type == DType::kQ4_1 || v.type == DType::kQ8_0); }

// The packed buffer: token pairs as [pair][block], then Q8_1's s values per group of
// kTokensPerPass tokens as [group][block][token].
std::size_t pairs_bytes(const QuantMatmulView& v) { return v.tokens / 2 * (v.cols / kQuantBlock) * sizeof(PackedPair); }

std::size_t pack_bytes(const QuantMatmulView& v) {
  if (!paired(v)) return 0;
  const std::size_t groups = (v.tokens + kTokensPerPass - 1) / kTokensPerPass;
  return pairs_bytes(v) + groups * (v.cols / kQuantBlock) * kTokensPerPass * sizeof(float);
}

void pack(const QuantMatmulView& v, std::byte* buffer) {
  if (!paired(v)) return;
  const std::size_t nb = v.cols / kQuantBlock, npairs = v.tokens / 2;
  auto* pairs = reinterpret_cast<PackedPair*>(buffer);
  auto* mins_s = reinterpret_cast<float*>(buffer + pairs_bytes(v));
  const std::size_t qs_offset = v.type == DType::kQ4_1 ? offsetof(BlockQ8_1, qs) : offsetof(BlockQ8_0, qs);
  const std::size_t block_size = v.type == DType::kQ4_1 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
  for (std::size_t k = 0; k < npairs; ++k) {
    for (std::size_t i = 0; i < nb; ++i) {
      PackedPair& pp = pairs[k * nb + i];
      for (std::size_t half = 0; half < 2; ++half) {
        const std::size_t t = 2 * k + half;
        std::memcpy(pp.qs + 32 * half, v.act + t * v.act_row_bytes + i * block_size + qs_offset, 32);
        _mm256_store_ps(pp.d + 8 * half, _mm256_set1_ps(v.scales[2 * nb * t + i]));
      }
    }
  }
  if (v.type != DType::kQ4_1) return;
  const std::size_t groups = (v.tokens + kTokensPerPass - 1) / kTokensPerPass;
  std::memset(mins_s, 0, groups * nb * kTokensPerPass * sizeof(float));
  for (std::size_t t = 0; t < v.tokens; ++t) {
    for (std::size_t i = 0; i < nb; ++i) {
      mins_s[((t / kTokensPerPass) * nb + i) * kTokensPerPass + t % kTokensPerPass] = v.scales[2 * nb * t + nb + i];
    }
  }
}

// One weight row against tokens in pairs (prefill and batched decode). `pairs`: [pair][block] of
// this group; `mins_s`: this group's s values as [block][kTokensPerPass tokens].
void row_token_pairs_q4_1(const BlockQ4_1* w, const PackedPair* pairs, const float* mins_s, std::size_t npairs,
                          std::size_t nb, float* out) {
  __m512 acc[kTokensPerPass / 2];
  __m256 mins = _mm256_setzero_ps();
  for (std::size_t k = 0; k < npairs; ++k) acc[k] = _mm512_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const __m512 wd = _mm512_set1_ps(V::h2f(w[i].d));
    mins = _mm256_add_ps(mins, _mm256_mul_ps(_mm256_set1_ps(V::h2f(w[i].m)), _mm256_loadu_ps(mins_s + i * kTokensPerPass)));
    const __m256i q = V::nibbles(w[i].qs);
    const __m512i qx = join(q, q);
    for (std::size_t k = 0; k < npairs; ++k) {
      const PackedPair& pp = pairs[k * nb + i];
      const __m512 scale = _mm512_mul_ps(wd, _mm512_load_ps(pp.d));
      acc[k] = _mm512_fmadd_ps(scale, dot_u8s8_512(qx, _mm512_load_si512(pp.qs)), acc[k]);
    }
  }
  float m[8];
  _mm256_storeu_ps(m, mins);
  for (std::size_t k = 0; k < npairs; ++k) {
    hsum_halves(acc[k], out[2 * k], out[2 * k + 1]);
    out[2 * k] += m[2 * k];
    out[2 * k + 1] += m[2 * k + 1];
  }
}

void row_token_pairs_q8_0(const BlockQ8_0* w, const PackedPair* pairs, std::size_t npairs, std::size_t nb, float* out) {
  __m512 acc[kTokensPerPass / 2];
  for (std::size_t k = 0; k < npairs; ++k) acc[k] = _mm512_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const __m512 wd = _mm512_set1_ps(V::h2f(w[i].d));
    const __m256i q = V::load_b(w[i].qs);
    const __m512i qx = join(q, q);
    const __m512i ax = _mm512_abs_epi8(qx);
    const __mmask64 negative = _mm512_movepi8_mask(qx);
    for (std::size_t k = 0; k < npairs; ++k) {
      const PackedPair& pp = pairs[k * nb + i];
      const __m512i qy = _mm512_load_si512(pp.qs);
      const __m512i sy = _mm512_mask_sub_epi8(qy, negative, _mm512_setzero_si512(), qy);
      acc[k] = _mm512_fmadd_ps(_mm512_mul_ps(wd, _mm512_load_ps(pp.d)), dot_u8s8_512(ax, sy), acc[k]);
    }
  }
  for (std::size_t k = 0; k < npairs; ++k) hsum_halves(acc[k], out[2 * k], out[2 * k + 1]);
}

// x86_packed.h's group_q4_1 with four rows per 512-bit register: rows 4j .. 4j+3 in one load,
// each row's four low-nibble (and four high-nibble) lanes in its own 128-bit quarter; NT tokens at
// once, so that a block's unpacking and scale conversion serve them all. The lanes are the same
// as there, so the results are the same bits.
template <int NT>
void group_q4_1_512(const PackedQ4_1x8* g, const BlockQ8_1* const* y, const float* const* ad, const float* const* as,
                    std::size_t nb, float* const* out) {
  __m512 acc_lo[NT][2], acc_hi[NT][2];
  __m256 mins[NT];
  for (int t = 0; t < NT; ++t) {
    mins[t] = _mm256_setzero_ps();
    for (int j = 0; j < 2; ++j) acc_lo[t][j] = acc_hi[t][j] = _mm512_setzero_ps();
  }
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i quad[2] = {_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                           _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7)};
  for (std::size_t i = 0; i < nb; ++i) {
    const PackedQ4_1x8& b = g[i];
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.d)));
    const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.m)));
    // Row 4j + k's d over quarter k, for both quads.
    const __m512 dq[2] = {_mm512_permutexvar_ps(quad[0], _mm512_zextps256_ps512(d)),
                          _mm512_permutexvar_ps(quad[1], _mm512_zextps256_ps512(d))};
    __m512i lo[2], hi[2];
    for (int j = 0; j < 2; ++j) {
      const __m512i q = _mm512_loadu_si512(b.qs[4 * j]);
      lo[j] = _mm512_and_si512(q, low4);
      hi[j] = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
    }
    for (int t = 0; t < NT; ++t) {
      mins[t] = _mm256_add_ps(mins[t], _mm256_mul_ps(m, _mm256_set1_ps(as[t][i])));
      const __m512 a = _mm512_set1_ps(ad[t][i]);
      const __m512i ylo = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y[t][i].qs)));
      const __m512i yhi = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y[t][i].qs + 16)));
      for (int j = 0; j < 2; ++j) {
        const __m512 scale = _mm512_mul_ps(dq[j], a);  // the reference's wd * ad, lane by lane
        acc_lo[t][j] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[j], ylo)),
                                       acc_lo[t][j]);
        acc_hi[t][j] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[j], yhi)),
                                       acc_hi[t][j]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) {
    alignas(32) float mt[kPackRows];
    _mm256_store_ps(mt, mins[t]);
    for (int j = 0; j < 2; ++j) {
      alignas(64) float folded[16];
      _mm512_store_ps(folded, _mm512_add_ps(acc_lo[t][j], acc_hi[t][j]));
      for (int k = 0; k < 4; ++k) out[t][4 * j + k] = hsum_folded(_mm_load_ps(folded + 4 * k)) + mt[4 * j + k];
    }
  }
}

// This level's Q8_0 weights are packed as unsigned bytes w + 128 (x86_packed.h's layout
// otherwise), so that one vpdpbusd takes a row's block against the token's signed bytes:
// Σ (w + 128) · y - 128 · Σ y is the reference's exact lane sum Σ w · y, and the correction is one
// instruction per eight rows instead of two sign operations per row.
void pack_weight_512(DType type, const std::byte* w, std::size_t rows, std::size_t cols, std::byte* out) {
  pack_weight(type, w, rows, cols, out);
  if (type != DType::kQ8_0) return;
  auto* blocks = reinterpret_cast<PackedQ8_0x8*>(out);
  for (std::size_t b = 0; b < weight_pack_bytes(type, rows, cols) / sizeof(PackedQ8_0x8); ++b) {
    for (auto& row : blocks[b].qs) {
      for (std::int8_t& q : row) q = static_cast<std::int8_t>(static_cast<std::uint8_t>(q) ^ 0x80);  // + 128 as u8
    }
  }
}

void group_q8_0_512(const PackedQ8_0x8* g, const BlockQ8_0* y, const float* ad, std::size_t nb, float* out) {
  __m512 acc[4];  // row pair k: [row 2k's 8 lanes | row 2k+1's]
  for (auto& a : acc) a = _mm512_setzero_ps();
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i pair[4] = {_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                           _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
                           _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5),
                           _mm512_setr_epi32(6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7)};
  for (std::size_t i = 0; i < nb; ++i) {
    const PackedQ8_0x8& b = g[i];
    const __m512 scales = _mm512_zextps256_ps512(
        _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.d))), _mm256_set1_ps(ad[i])));
    const __m512i yv = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs)));
    const __m512i correction = _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, yv);
    for (int k = 0; k < 4; ++k) {
      const __m512i u = _mm512_loadu_si512(b.qs[2 * k]);
      const __m512i lanes = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, yv), correction);
      acc[k] = _mm512_fmadd_ps(_mm512_permutexvar_ps(pair[k], scales), _mm512_cvtepi32_ps(lanes), acc[k]);
    }
  }
  for (int k = 0; k < 4; ++k) {
    out[2 * k] = V::hsum(_mm512_extractf32x8_ps(acc[k], 0));
    out[2 * k + 1] = V::hsum(_mm512_extractf32x8_ps(acc[k], 1));
  }
}

// Rows r .. r+7 of a packed weight: Q4_1 four tokens at a time (then two, then one), Q8_0 token by
// token.
void group_rows_512(const QuantMatmulView& v, std::size_t r) {
  const std::size_t nb = v.cols / kQuantBlock, g = r / kPackRows;
  if (v.type == DType::kQ8_0) {
    for (std::size_t t = 0; t < v.tokens; ++t) {
      group_q8_0_512(reinterpret_cast<const PackedQ8_0x8*>(v.packed_weight) + g * nb,
                     reinterpret_cast<const BlockQ8_0*>(v.act + t * v.act_row_bytes), v.scales + 2 * nb * t, nb,
                     v.y + t * v.rows + r);
    }
    return;
  }
  const auto* w = reinterpret_cast<const PackedQ4_1x8*>(v.packed_weight) + g * nb;
  const BlockQ8_1* y[4];
  const float *ad[4], *as[4];
  float* out[4];
  for (std::size_t t = 0; t < v.tokens;) {
    const std::size_t n = v.tokens - t >= 4 ? 4 : v.tokens - t >= 2 ? 2 : 1;
    for (std::size_t k = 0; k < n; ++k) {
      y[k] = reinterpret_cast<const BlockQ8_1*>(v.act + (t + k) * v.act_row_bytes);
      ad[k] = v.scales + 2 * nb * (t + k);
      as[k] = ad[k] + nb;
      out[k] = v.y + (t + k) * v.rows + r;
    }
    if (n == 4) {
      group_q4_1_512<4>(w, y, ad, as, nb, out);
    } else if (n == 2) {
      group_q4_1_512<2>(w, y, ad, as, nb, out);
    } else {
      group_q4_1_512<1>(w, y, ad, as, nb, out);
    }
    t += n;
  }
}

void quant_rows_512(const QuantMatmulView& v, std::size_t r0, std::size_t r1) {
  // A packed weight (the engine's): x86_packed.h, at least as fast as the token pairs below at every
  // batch here. The pairs and the two-row path serve weights nobody packed.
  if (has_packed(v)) return packed_rows(v, r0, r1, group_rows_512);
  const std::size_t nb = v.cols / kQuantBlock;
  const bool pairs_ok = paired(v) && v.packed != nullptr;
  const auto* pairs = reinterpret_cast<const PackedPair*>(v.packed);
  const auto* mins_s = pairs_ok ? reinterpret_cast<const float*>(v.packed + pairs_bytes(v)) : nullptr;
  float sums[kTokensPerPass];
  for (std::size_t t0 = 0; t0 < v.tokens; t0 += kTokensPerPass) {
    const std::size_t ntok = v.tokens - t0 < kTokensPerPass ? v.tokens - t0 : kTokensPerPass;
    std::size_t r = r0, first_single = 0;  // tokens below first_single were done in pairs
    if (pairs_ok && ntok >= 2) {
      const std::size_t npairs = ntok / 2;
      const PackedPair* pp = pairs + (t0 / 2) * nb;
      for (std::size_t rr = r0; rr < r1; ++rr) {
        const std::byte* w = v.weight + rr * v.w_row_bytes;
        if (v.type == DType::kQ4_1) {
          row_token_pairs_q4_1(reinterpret_cast<const BlockQ4_1*>(w), pp, mins_s + (t0 / kTokensPerPass) * nb * kTokensPerPass,
                               npairs, nb, sums);
        } else {
          row_token_pairs_q8_0(reinterpret_cast<const BlockQ8_0*>(w), pp, npairs, nb, sums);
        }
        for (std::size_t k = 0; k < 2 * npairs; ++k) v.y[(t0 + k) * v.rows + rr] = sums[k];
      }
      first_single = 2 * npairs;
    } else if (ntok == 1 && (v.type == DType::kQ4_1 || v.type == DType::kQ8_0)) {
      // A single token: two weight rows side by side instead.
      const std::byte* act = v.act + t0 * v.act_row_bytes;
      const float* d = v.scales + 2 * nb * t0;
      for (; r + 2 <= r1; r += 2) {
        const std::byte* wa = v.weight + r * v.w_row_bytes;
        const std::byte* wb = wa + v.w_row_bytes;
        if (v.type == DType::kQ4_1) {
          two_rows_q4_1(reinterpret_cast<const BlockQ4_1*>(wa), reinterpret_cast<const BlockQ4_1*>(wb),
                        reinterpret_cast<const BlockQ8_1*>(act), d, d + nb, nb, sums);
        } else {
          two_rows_q8_0(reinterpret_cast<const BlockQ8_0*>(wa), reinterpret_cast<const BlockQ8_0*>(wb),
                        reinterpret_cast<const BlockQ8_0*>(act), d, nb, sums);
        }
        v.y[t0 * v.rows + r] = sums[0];
        v.y[t0 * v.rows + r + 1] = sums[1];
      }
    }
    if (first_single == ntok) continue;
    for (; r < r1; ++r) row_times_tokens<V>(v, r, t0 + first_single, ntok - first_single);
  }
}

}  // namespace

const IsaKernels& table() {
  static const IsaKernels t = [] {
    IsaKernels k = lane_table<V>(CpuIsa::kAvx512);
    k.quantize_activations = quantize_activations_avx2;
    k.pack_bytes = pack_bytes;
    k.pack = pack;
    k.quant_rows = quant_rows_512;
    k.weight_pack_bytes = weight_pack_bytes;
    k.pack_weight = pack_weight_512;
    return k;
  }();
  return t;
}

}  // namespace tiergate::kernels::cpu::avx512_isa
