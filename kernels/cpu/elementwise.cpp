#include "kernels/cpu/elementwise.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/isa_kernels.h"

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

void silu_mul(const float* gate, const float* up, float* out, std::size_t n) {
  active_kernels().silu_mul(gate, up, out, n);
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
