#include "kernels/cpu/elementwise.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <limits>

namespace tiergate::kernels::cpu {

void rms_norm(const float* x, const float* weight, float* out, std::size_t rows, std::size_t n, float eps) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = out + r * n;
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i) sum += static_cast<double>(xr[i] * xr[i]);
    const float mean = static_cast<float>(sum / static_cast<double>(n));
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (std::size_t i = 0; i < n; ++i) yr[i] = xr[i] * scale * weight[i];
  }
}

void rope(float* x, const int* positions, std::size_t tokens, std::size_t heads, std::size_t head_dim,
          std::size_t rope_dims, float freq_base) {
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(rope_dims));
  float cos_cache[512], sin_cache[512];
  for (std::size_t t = 0; t < tokens; ++t) {
    float theta = static_cast<float>(positions[t]);
    for (std::size_t i = 0; i < rope_dims / 2; ++i) {
      cos_cache[i] = std::cos(theta);
      sin_cache[i] = std::sin(theta);
      theta *= theta_scale;
    }
    for (std::size_t h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * head_dim;
      for (std::size_t i = 0; i < rope_dims / 2; ++i) {
        // The fused forms GCC gives ggml's x0*cos - x1*sin and x0*sin + x1*cos (the first product
        // fused, the second rounded), so that rotations agree with llama.cpp to the bit.
        const float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = std::fma(x0, cos_cache[i], -(x1 * sin_cache[i]));
        v[2 * i + 1] = std::fma(x0, sin_cache[i], x1 * cos_cache[i]);
      }
    }
  }
}

namespace {

// e^x the way ggml's vectorised SiLU computes it (Cody-Waite reduction to 2^n·e^b, |b| <= ln2/2,
// and a degree-5 polynomial for e^b; the method and coefficients of Arm's optimized-routines
// expf). Within ~1.5 ulp of expf, but not equal to it, and matching it bit for bit is what makes
// our activations agree with llama.cpp's.
[[maybe_unused]] float expf_poly(float x) {
  const float shift = 0x1.8p23f;  // 1.5 · 2^23: adding it rounds to an integer
  const float z = std::fma(x, 0x1.715476p+0f, shift);  // x / ln2 + shift
  const float n = z - shift;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));  // x - n·ln2, in two parts
  if (std::fabs(n) > 192) return n > 0 ? INFINITY : 0.0f;
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, std::fma(0x1.ffffecp-1f, b, 1.0f));
  return std::ldexp(j, static_cast<int>(n));
}

#if defined(__AVX512F__)
// expf_poly on 16 lanes (the same operations per lane).
__m512 expf_poly16(__m512 x) {
  const __m512 shift = _mm512_set1_ps(0x1.8p23f);
  const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), shift);
  const __m512 n = _mm512_sub_ps(z, shift);
  const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f), _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
  const __m512 u = _mm512_mul_ps(b, b);
  const __m512 j = _mm512_fmadd_ps(
      _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                      _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
      u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
  const __m512 res = _mm512_scalef_ps(j, n);
  const __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192), _CMP_GT_OQ);
  if (!big) return res;
  const __mmask16 negative = _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ);
  return _mm512_mask_blend_ps(big, res, _mm512_mask_blend_ps(negative, _mm512_set1_ps(INFINITY), _mm512_setzero_ps()));
}
#endif

}  // namespace

void silu_mul(const float* gate, const float* up, float* out, std::size_t n) {
  // ggml evaluates full 16-wide vectors with the polynomial exp and any tail with expf.
  const std::size_t vectorised = n & ~std::size_t{15};
#if defined(__AVX512F__)
  for (std::size_t i = 0; i < vectorised; i += 16) {
    const __m512 x = _mm512_loadu_ps(gate + i);
    const __m512 e = expf_poly16(_mm512_sub_ps(_mm512_setzero_ps(), x));
    const __m512 silu = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    _mm512_storeu_ps(out + i, _mm512_mul_ps(silu, _mm512_loadu_ps(up + i)));
  }
#else
  for (std::size_t i = 0; i < vectorised; ++i) {
    const float x = gate[i];
    out[i] = x / (1.0f + expf_poly(0.0f - x)) * up[i];
  }
#endif
  for (std::size_t i = vectorised; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void add_inplace(float* x, const float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) x[i] += y[i];
}

void softmax_inplace(float* x, std::size_t n) {
  float max = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < n; ++i) max = std::max(max, x[i]);
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (std::size_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace tiergate::kernels::cpu
