#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>

#include "kernels/check.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/simd.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define TG_MATMUL_AVX2 1
#endif

namespace tiergate::kernels::cpu {
namespace {

constexpr std::size_t kTokensPerPass = 8;  // activation rows sharing one unpacked weight block

// Per-thread scratch for activation scales (the matmul is called from the engine thread only).
std::vector<float>& scale_scratch() {
  thread_local std::vector<float> scales;
  return scales;
}

#ifdef TG_MATMUL_AVX2
using simd::hsum;
using simd::unpack_nibbles;

float h2f(std::uint16_t h) { return _cvtsh_ss(h); }

// Σ u8·s8 over 32 bytes as 8 int32 lanes (no int16 saturation for the ranges used here, so both
// forms give the same sums).
__m256i dot_u8s8(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

// One weight row against up to four activation rows. Per token the operations and their order
// are those of the single-row dot in quant.cpp (and of ggml), so results do not depend on how
// many tokens share the pass.
void rows_q4_1(const BlockQ4_1* w, const BlockQ8_1* const* a, std::size_t ntok, std::size_t nb, float* out) {
  __m256 acc[kTokensPerPass];
  float mins[kTokensPerPass] = {};
  for (std::size_t t = 0; t < ntok; ++t) acc[t] = _mm256_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const float wd = h2f(w[i].d), wm = h2f(w[i].m);
    const __m256i qx = unpack_nibbles(w[i].qs);
    for (std::size_t t = 0; t < ntok; ++t) {
      const BlockQ8_1& y = a[t][i];
      mins[t] += wm * h2f(y.s);
      const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.qs));
      const __m256 p = _mm256_cvtepi32_ps(dot_u8s8(qx, qy));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(wd * h2f(y.d)), p, acc[t]);
    }
  }
  for (std::size_t t = 0; t < ntok; ++t) out[t] = hsum(acc[t]) + mins[t];
}

// The 32 signed weights of a block: Q8_0 as stored, Q4_0 as nibbles minus 8.
__m256i signed_weights(const BlockQ8_0& b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)); }
__m256i signed_weights(const BlockQ4_0& b) { return _mm256_sub_epi8(unpack_nibbles(b.qs), _mm256_set1_epi8(8)); }

// Signed weight blocks (Q8_0, Q4_0) against Q8_0 activations.
template <typename Block>
void rows_signed(const Block* w, const BlockQ8_0* const* a, std::size_t ntok, std::size_t nb, float* out) {
  __m256 acc[kTokensPerPass];
  for (std::size_t t = 0; t < ntok; ++t) acc[t] = _mm256_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const float wd = h2f(w[i].d);
    const __m256i qx = signed_weights(w[i]);
    const __m256i ax = _mm256_sign_epi8(qx, qx);
    for (std::size_t t = 0; t < ntok; ++t) {
      const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t][i].qs));
      const __m256 p = _mm256_cvtepi32_ps(dot_u8s8(ax, _mm256_sign_epi8(qy, qx)));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(wd * h2f(a[t][i].d)), p, acc[t]);
    }
  }
  for (std::size_t t = 0; t < ntok; ++t) out[t] = hsum(acc[t]);
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__)
#define TG_MATMUL_AVX512 1
// 512-bit forms that put two (row, token) pairs side by side, each in its own 256-bit half. Every
// lane sees exactly the operations, in the same order, as in the 256-bit kernels above, so the
// results are bit-identical to them (and to ggml); only the throughput doubles.
__m512 halves(float lo, float hi) { return _mm512_insertf32x8(_mm512_set1_ps(lo), _mm256_set1_ps(hi), 1); }
__m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }
void hsum_halves(__m512 v, float& lo, float& hi) {
  lo = hsum(_mm512_castps512_ps256(v));
  hi = hsum(_mm512_extractf32x8_ps(v, 1));
}
__m512 dot_u8s8_512(__m512i u, __m512i s) { return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s)); }
// Signed·signed via |x| · (y with x's sign); lanes where x is 0 contribute 0 whatever y holds.
__m512 dot_i8_512(__m512i x, __m512i y) {
  const __m512i sy = _mm512_mask_sub_epi8(y, _mm512_movepi8_mask(x), _mm512_setzero_si512(), y);
  return dot_u8s8_512(_mm512_abs_epi8(x), sy);
}

// Rows a and b of the weight against one token (decode at batch 1).
void two_rows_q4_1(const BlockQ4_1* wa, const BlockQ4_1* wb, const BlockQ8_1* y, const float* ad, const float* as,
                   std::size_t nb, float* out) {
  __m512 acc = _mm512_setzero_ps();
  float mins_a = 0, mins_b = 0;
  for (std::size_t i = 0; i < nb; ++i) {
    const float yd = ad[i], ys = as[i];
    mins_a += h2f(wa[i].m) * ys;
    mins_b += h2f(wb[i].m) * ys;
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs));
    const __m512 p = dot_u8s8_512(join(unpack_nibbles(wa[i].qs), unpack_nibbles(wb[i].qs)), join(qy, qy));
    acc = _mm512_fmadd_ps(halves(h2f(wa[i].d) * yd, h2f(wb[i].d) * yd), p, acc);
  }
  hsum_halves(acc, out[0], out[1]);
  out[0] += mins_a;
  out[1] += mins_b;
}

// Two tokens' activation block side by side, ready for one 512-bit load each: their int8 values
// and their scales broadcast over each half.
struct alignas(64) PackedPair {
  std::int8_t qs[64];
  float d[16];
};

std::vector<PackedPair>& packed_scratch() {
  thread_local std::vector<PackedPair> packed;
  return packed;
}

std::vector<float>& mins_scratch() {
  thread_local std::vector<float> mins;
  return mins;
}

// One weight row against tokens in pairs (prefill and batched decode). `pairs` holds the packed
// blocks of `npairs` token pairs ([pair][block]); `mins_s` the Q8_1 s values as [block][8 tokens].
void row_token_pairs_q4_1(const BlockQ4_1* w, const PackedPair* pairs, const float* mins_s, std::size_t npairs,
                          std::size_t nb, float* out) {
  __m512 acc[kTokensPerPass / 2];
  __m256 mins = _mm256_setzero_ps();
  for (std::size_t k = 0; k < npairs; ++k) acc[k] = _mm512_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const __m512 wd = _mm512_set1_ps(h2f(w[i].d));
    mins = _mm256_add_ps(mins, _mm256_mul_ps(_mm256_set1_ps(h2f(w[i].m)), _mm256_loadu_ps(mins_s + i * kTokensPerPass)));
    const __m256i q = unpack_nibbles(w[i].qs);
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
    const __m512 wd = _mm512_set1_ps(h2f(w[i].d));
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs));
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

void two_rows_q8_0(const BlockQ8_0* wa, const BlockQ8_0* wb, const BlockQ8_0* y, const float* ad, std::size_t nb,
                   float* out) {
  __m512 acc = _mm512_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const float yd = ad[i];
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs));
    const __m512i qx = join(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wa[i].qs)),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb[i].qs)));
    acc = _mm512_fmadd_ps(halves(h2f(wa[i].d) * yd, h2f(wb[i].d) * yd), dot_i8_512(qx, join(qy, qy)), acc);
  }
  hsum_halves(acc, out[0], out[1]);
}

#endif
#endif

// out[t] = dot(weight row, activation row t) for t < ntok.
void row_times_tokens(DType type, const std::byte* w, const std::byte* const* act, const float* const* ad,
                      const float* const* as, std::size_t ntok, std::size_t cols, float* out) {
  (void)ad;  // the scales are used by the 512-bit kernels only
  (void)as;
#ifdef TG_MATMUL_AVX2
  const std::size_t nb = cols / kQuantBlock;
  switch (type) {
    case DType::kQ4_1:
      rows_q4_1(reinterpret_cast<const BlockQ4_1*>(w), reinterpret_cast<const BlockQ8_1* const*>(act), ntok, nb, out);
      return;
    case DType::kQ8_0:
      rows_signed(reinterpret_cast<const BlockQ8_0*>(w), reinterpret_cast<const BlockQ8_0* const*>(act), ntok, nb, out);
      return;
    case DType::kQ4_0:
      rows_signed(reinterpret_cast<const BlockQ4_0*>(w), reinterpret_cast<const BlockQ8_0* const*>(act), ntok, nb, out);
      return;
    default:
      break;
  }
#endif
  for (std::size_t t = 0; t < ntok; ++t) out[t] = dot(type, w, act[t], cols);
}

}  // namespace

void matmul(const MatmulParams& p, ThreadPool& pool, std::vector<std::byte>& scratch) {
  TG_CHECK(p.cols % block_elements(p.weight_type) == 0);
  const std::size_t act_bytes = activation_row_bytes(p.weight_type, p.cols);
  if (scratch.size() < act_bytes * p.tokens) scratch.resize(act_bytes * p.tokens);
  std::byte* act = scratch.data();
  // Activation block scales as floats, converted once per call rather than once per weight row.
  const std::size_t nb = p.cols / kQuantBlock;
  std::vector<float>& scales = scale_scratch();
  scales.resize(2 * nb * p.tokens);
  pool.parallel_for(p.tokens, [&](std::size_t begin, std::size_t end) {
    for (std::size_t t = begin; t < end; ++t) {
      std::byte* row = act + t * act_bytes;
      quantize_activation_row(p.weight_type, p.x + t * p.cols, row, p.cols);
      float* d = scales.data() + 2 * nb * t;
      if (p.weight_type == DType::kQ4_1) {
        const auto* b = reinterpret_cast<const BlockQ8_1*>(row);
        for (std::size_t i = 0; i < nb; ++i) d[i] = half_to_float(b[i].d), d[nb + i] = half_to_float(b[i].s);
      } else if (p.weight_type == DType::kQ4_0 || p.weight_type == DType::kQ8_0) {
        const auto* b = reinterpret_cast<const BlockQ8_0*>(row);
        for (std::size_t i = 0; i < nb; ++i) d[i] = half_to_float(b[i].d);
      }
    }
  });

#ifdef TG_MATMUL_AVX512
  // Token pairs, packed once per call for single 512-bit loads: [pair][block], and the Q8_1 s
  // values per group of kTokensPerPass tokens as [group][block][token].
  const bool paired = p.tokens >= 2 && (p.weight_type == DType::kQ4_1 || p.weight_type == DType::kQ8_0);
  // Bound here, on the calling thread: the workers read the caller's buffers.
  std::vector<PackedPair>& packed = packed_scratch();
  std::vector<float>& mins_s = mins_scratch();
  if (paired) {
    const std::size_t npairs = p.tokens / 2, groups = (p.tokens + kTokensPerPass - 1) / kTokensPerPass;
    packed.resize(npairs * nb);
    mins_s.assign(groups * nb * kTokensPerPass, 0.0f);
    const std::size_t qs_offset = p.weight_type == DType::kQ4_1 ? offsetof(BlockQ8_1, qs) : offsetof(BlockQ8_0, qs);
    const std::size_t block_size = p.weight_type == DType::kQ4_1 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
    for (std::size_t k = 0; k < npairs; ++k) {
      for (std::size_t i = 0; i < nb; ++i) {
        PackedPair& pp = packed[k * nb + i];
        for (std::size_t half = 0; half < 2; ++half) {
          const std::size_t t = 2 * k + half;
          std::memcpy(pp.qs + 32 * half, act + t * act_bytes + i * block_size + qs_offset, 32);
          std::fill_n(pp.d + 8 * half, 8, scales[2 * nb * t + i]);
        }
      }
    }
    if (p.weight_type == DType::kQ4_1) {
      for (std::size_t t = 0; t < p.tokens; ++t) {
        for (std::size_t i = 0; i < nb; ++i) {
          mins_s[((t / kTokensPerPass) * nb + i) * kTokensPerPass + t % kTokensPerPass] = scales[2 * nb * t + nb + i];
        }
      }
    }
  }
#endif

  const std::size_t w_bytes = row_bytes(p.weight_type, p.cols);
  const auto* w = static_cast<const std::byte*>(p.weight);
  // Tiles of weight rows: a tile is read from memory once and stays in cache for every token.
  constexpr std::size_t kTile = 16;
  const std::size_t tiles = (p.rows + kTile - 1) / kTile;
  pool.parallel_for(tiles, [&](std::size_t begin, std::size_t end) {
    std::array<const std::byte*, kTokensPerPass> rows_act{};
    std::array<const float*, kTokensPerPass> rows_d{}, rows_s{};
    float sums[kTokensPerPass];
    for (std::size_t tile = begin; tile < end; ++tile) {
      const std::size_t r0 = tile * kTile, r1 = std::min(p.rows, r0 + kTile);
      for (std::size_t t0 = 0; t0 < p.tokens; t0 += kTokensPerPass) {
        const std::size_t ntok = std::min(kTokensPerPass, p.tokens - t0);
        for (std::size_t k = 0; k < ntok; ++k) {
          rows_act[k] = act + (t0 + k) * act_bytes;
          rows_d[k] = scales.data() + 2 * nb * (t0 + k);
          rows_s[k] = rows_d[k] + nb;
        }
        std::size_t r = r0;
        std::size_t first_single = 0;  // tokens below this were done in pairs
#ifdef TG_MATMUL_AVX512
        if (paired && ntok >= 2) {
          const std::size_t npairs = ntok / 2;
          const PackedPair* pp = packed.data() + (t0 / 2) * nb;
          for (std::size_t rr = r0; rr < r1; ++rr) {
            if (p.weight_type == DType::kQ4_1) {
              row_token_pairs_q4_1(reinterpret_cast<const BlockQ4_1*>(w + rr * w_bytes), pp,
                                   mins_s.data() + (t0 / kTokensPerPass) * nb * kTokensPerPass, npairs, nb, sums);
            } else {
              row_token_pairs_q8_0(reinterpret_cast<const BlockQ8_0*>(w + rr * w_bytes), pp, npairs, nb, sums);
            }
            for (std::size_t k = 0; k < 2 * npairs; ++k) p.y[(t0 + k) * p.rows + rr] = sums[k];
          }
          first_single = 2 * npairs;
        } else if (ntok == 1 && (p.weight_type == DType::kQ4_1 || p.weight_type == DType::kQ8_0)) {
          // A single token: two weight rows side by side instead.
          for (; r + 2 <= r1; r += 2) {
            float two[2];
            if (p.weight_type == DType::kQ4_1) {
              two_rows_q4_1(reinterpret_cast<const BlockQ4_1*>(w + r * w_bytes),
                            reinterpret_cast<const BlockQ4_1*>(w + (r + 1) * w_bytes),
                            reinterpret_cast<const BlockQ8_1*>(rows_act[0]), rows_d[0], rows_s[0], nb, two);
            } else {
              two_rows_q8_0(reinterpret_cast<const BlockQ8_0*>(w + r * w_bytes),
                            reinterpret_cast<const BlockQ8_0*>(w + (r + 1) * w_bytes),
                            reinterpret_cast<const BlockQ8_0*>(rows_act[0]), rows_d[0], nb, two);
            }
            p.y[t0 * p.rows + r] = two[0];
            p.y[t0 * p.rows + r + 1] = two[1];
          }
        }
#endif
        if (first_single == ntok) continue;
        const std::size_t rest = ntok - first_single;
        for (; r < r1; ++r) {
          row_times_tokens(p.weight_type, w + r * w_bytes, rows_act.data() + first_single, rows_d.data() + first_single,
                           rows_s.data() + first_single, rest, p.cols, sums);
          for (std::size_t k = 0; k < rest; ++k) p.y[(t0 + first_single + k) * p.rows + r] = sums[k];
        }
      }
    }
  });
}

}  // namespace tiergate::kernels::cpu
