#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <array>

#include "kernels/check.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quant.h"

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
float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  lo = _mm_add_ps(lo, _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

float h2f(std::uint16_t h) { return _cvtsh_ss(h); }

__m256i unpack_nibbles(const std::uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

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

void rows_q8_0(const BlockQ8_0* w, const BlockQ8_0* const* a, std::size_t ntok, std::size_t nb, float* out) {
  __m256 acc[kTokensPerPass];
  for (std::size_t t = 0; t < ntok; ++t) acc[t] = _mm256_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const float wd = h2f(w[i].d);
    const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs));
    const __m256i ax = _mm256_sign_epi8(qx, qx);
    for (std::size_t t = 0; t < ntok; ++t) {
      const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t][i].qs));
      const __m256 p = _mm256_cvtepi32_ps(dot_u8s8(ax, _mm256_sign_epi8(qy, qx)));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(wd * h2f(a[t][i].d)), p, acc[t]);
    }
  }
  for (std::size_t t = 0; t < ntok; ++t) out[t] = hsum(acc[t]);
}

void rows_q4_0(const BlockQ4_0* w, const BlockQ8_0* const* a, std::size_t ntok, std::size_t nb, float* out) {
  __m256 acc[kTokensPerPass];
  for (std::size_t t = 0; t < ntok; ++t) acc[t] = _mm256_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const float wd = h2f(w[i].d);
    const __m256i qx = _mm256_sub_epi8(unpack_nibbles(w[i].qs), _mm256_set1_epi8(8));
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

// One weight row against tokens in pairs (prefill and batched decode).
void row_token_pairs_q4_1(const BlockQ4_1* w, const BlockQ8_1* const* a, const float* const* ad,
                          const float* const* as, std::size_t ntok, std::size_t nb, float* out) {
  __m512 acc[kTokensPerPass / 2];
  float mins[kTokensPerPass] = {};
  const std::size_t pairs = ntok / 2;
  for (std::size_t k = 0; k < pairs; ++k) acc[k] = _mm512_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const float wd = h2f(w[i].d), wm = h2f(w[i].m);
    const __m256i q = unpack_nibbles(w[i].qs);
    const __m512i qx = join(q, q);
    for (std::size_t k = 0; k < pairs; ++k) {
      const std::size_t ta = 2 * k, tb = 2 * k + 1;
      mins[ta] += wm * as[ta][i];
      mins[tb] += wm * as[tb][i];
      const __m512i qy = join(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[ta][i].qs)),
                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[tb][i].qs)));
      acc[k] = _mm512_fmadd_ps(halves(wd * ad[ta][i], wd * ad[tb][i]), dot_u8s8_512(qx, qy), acc[k]);
    }
  }
  for (std::size_t k = 0; k < pairs; ++k) {
    hsum_halves(acc[k], out[2 * k], out[2 * k + 1]);
    out[2 * k] += mins[2 * k];
    out[2 * k + 1] += mins[2 * k + 1];
  }
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

void row_token_pairs_q8_0(const BlockQ8_0* w, const BlockQ8_0* const* a, const float* const* ad, std::size_t ntok,
                          std::size_t nb, float* out) {
  __m512 acc[kTokensPerPass / 2];
  const std::size_t pairs = ntok / 2;
  for (std::size_t k = 0; k < pairs; ++k) acc[k] = _mm512_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const float wd = h2f(w[i].d);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs));
    const __m512i qx = join(q, q);
    for (std::size_t k = 0; k < pairs; ++k) {
      const std::size_t ta = 2 * k, tb = 2 * k + 1;
      const __m512i qy = join(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[ta][i].qs)),
                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[tb][i].qs)));
      acc[k] = _mm512_fmadd_ps(halves(wd * ad[ta][i], wd * ad[tb][i]), dot_i8_512(qx, qy), acc[k]);
    }
  }
  for (std::size_t k = 0; k < pairs; ++k) hsum_halves(acc[k], out[2 * k], out[2 * k + 1]);
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
#ifdef TG_MATMUL_AVX512
  // Token pairs on the 512-bit path; an odd last token goes through the 256-bit kernel.
  if (ntok >= 2 && (type == DType::kQ4_1 || type == DType::kQ8_0)) {
    const std::size_t even = ntok & ~std::size_t{1};
    if (type == DType::kQ4_1) {
      row_token_pairs_q4_1(reinterpret_cast<const BlockQ4_1*>(w), reinterpret_cast<const BlockQ8_1* const*>(act), ad, as,
                           even, nb, out);
    } else {
      row_token_pairs_q8_0(reinterpret_cast<const BlockQ8_0*>(w), reinterpret_cast<const BlockQ8_0* const*>(act), ad, even,
                           nb, out);
    }
    if (even == ntok) return;
    row_times_tokens(type, w, act + even, ad + even, as + even, 1, cols, out + even);
    return;
  }
#endif
  switch (type) {
    case DType::kQ4_1:
      rows_q4_1(reinterpret_cast<const BlockQ4_1*>(w), reinterpret_cast<const BlockQ8_1* const*>(act), ntok, nb, out);
      return;
    case DType::kQ8_0:
      rows_q8_0(reinterpret_cast<const BlockQ8_0*>(w), reinterpret_cast<const BlockQ8_0* const*>(act), ntok, nb, out);
      return;
    case DType::kQ4_0:
      rows_q4_0(reinterpret_cast<const BlockQ4_0*>(w), reinterpret_cast<const BlockQ8_0* const*>(act), ntok, nb, out);
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
#ifdef TG_MATMUL_AVX512
        // A single token: two weight rows side by side instead.
        if (ntok == 1 && (p.weight_type == DType::kQ4_1 || p.weight_type == DType::kQ8_0)) {
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
        for (; r < r1; ++r) {
          row_times_tokens(p.weight_type, w + r * w_bytes, rows_act.data(), rows_d.data(), rows_s.data(), ntok, p.cols,
                           sums);
          for (std::size_t k = 0; k < ntok; ++k) p.y[(t0 + k) * p.rows + r] = sums[k];
        }
      }
    }
  });
}

}  // namespace tiergate::kernels::cpu
