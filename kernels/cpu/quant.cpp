#include "kernels/cpu/quant.h"

#include <algorithm>
#include <cmath>
#include <utility>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define TG_AVX2 1
#endif

#include "kernels/check.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/simd.h"

namespace tiergate::kernels::cpu {
namespace {

constexpr std::size_t QK = kQuantBlock;

float h2f(std::uint16_t h) { return half_to_float(h); }

// ---- portable reference ----

float dot_q4_0_ref(const BlockQ4_0* x, const BlockQ8_0* y, std::size_t nb) {
  float sum = 0;
  for (std::size_t i = 0; i < nb; ++i) {
    int acc = 0;
    for (std::size_t j = 0; j < QK / 2; ++j) {
      acc += ((x[i].qs[j] & 0x0F) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK / 2];
    }
    sum += static_cast<float>(acc) * h2f(x[i].d) * h2f(y[i].d);
  }
  return sum;
}

float dot_q4_1_ref(const BlockQ4_1* x, const BlockQ8_1* y, std::size_t nb) {
  float sum = 0;
  for (std::size_t i = 0; i < nb; ++i) {
    int acc = 0;
    for (std::size_t j = 0; j < QK / 2; ++j) {
      acc += (x[i].qs[j] & 0x0F) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + QK / 2];
    }
    sum += h2f(x[i].d) * h2f(y[i].d) * static_cast<float>(acc) + h2f(x[i].m) * h2f(y[i].s);
  }
  return sum;
}

float dot_q8_0_ref(const BlockQ8_0* x, const BlockQ8_0* y, std::size_t nb) {
  float sum = 0;
  for (std::size_t i = 0; i < nb; ++i) {
    int acc = 0;
    for (std::size_t j = 0; j < QK; ++j) acc += x[i].qs[j] * y[i].qs[j];
    sum += static_cast<float>(acc) * h2f(x[i].d) * h2f(y[i].d);
  }
  return sum;
}

float dot_float_ref(DType type, const void* w, const float* x, std::size_t n) {
  float sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    float wi;
    switch (type) {
      case DType::kF16: wi = h2f(static_cast<const std::uint16_t*>(w)[i]); break;
      case DType::kBF16: wi = bf16_to_float(static_cast<const std::uint16_t*>(w)[i]); break;
      default: wi = static_cast<const float*>(w)[i]; break;
    }
    sum += wi * x[i];
  }
  return sum;
}

#ifdef TG_AVX2
using simd::hsum;

float dot_f32_avx2(const float* w, const float* x, std::size_t n) {
  __m256 acc = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc);
  float sum = hsum(acc);
  for (; i < n; ++i) sum += w[i] * x[i];
  return sum;
}

float dot_f16_avx2(const std::uint16_t* w, const float* x, std::size_t n) {
  __m256 acc = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 wf = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
    acc = _mm256_fmadd_ps(wf, _mm256_loadu_ps(x + i), acc);
  }
  float sum = hsum(acc);
  for (; i < n; ++i) sum += h2f(w[i]) * x[i];
  return sum;
}
#endif

}  // namespace

namespace {

// One block of 32 activations to int8 with scale d = max|x| / 127, rounding to nearest even;
// returns d and the sum of the quantised values (Q8_1 keeps d·sum).
std::pair<float, int> quantize_block(const float* x, std::int8_t* qs) {
  float amax = 0;
  for (std::size_t j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float id = amax != 0 ? 127.0f / amax : 0.0f;  // ggml's x86 form (not 1/d)
  int sum = 0;
  for (std::size_t j = 0; j < QK; ++j) {
    const int q = static_cast<int>(std::nearbyint(x[j] * id));
    qs[j] = static_cast<std::int8_t>(q);
    sum += q;
  }
  return {amax / 127.0f, sum};
}

}  // namespace

void quantize_row_q8_0(const float* x, BlockQ8_0* y, std::size_t n) {
  TG_CHECK(n % QK == 0);
  for (std::size_t i = 0; i < n / QK; ++i) y[i].d = float_to_half(quantize_block(x + i * QK, y[i].qs).first);
}

void quantize_row_q8_1(const float* x, BlockQ8_1* y, std::size_t n) {
  TG_CHECK(n % QK == 0);
  for (std::size_t i = 0; i < n / QK; ++i) {
    const auto [d, sum] = quantize_block(x + i * QK, y[i].qs);
    y[i].d = float_to_half(d);
    y[i].s = float_to_half(d * static_cast<float>(sum));
  }
}

void dequantize_row(DType type, const void* row, float* out, std::size_t n) {
  switch (type) {
    case DType::kF32:
      std::copy_n(static_cast<const float*>(row), n, out);
      return;
    case DType::kF16:
      for (std::size_t i = 0; i < n; ++i) out[i] = h2f(static_cast<const std::uint16_t*>(row)[i]);
      return;
    case DType::kBF16:
      for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_float(static_cast<const std::uint16_t*>(row)[i]);
      return;
    case DType::kQ4_0: {
      const auto* b = static_cast<const BlockQ4_0*>(row);
      for (std::size_t i = 0; i < n / QK; ++i) {
        const float d = h2f(b[i].d);
        for (std::size_t j = 0; j < QK / 2; ++j) {
          out[i * QK + j] = static_cast<float>((b[i].qs[j] & 0x0F) - 8) * d;
          out[i * QK + j + QK / 2] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
        }
      }
      return;
    }
    case DType::kQ4_1: {
      const auto* b = static_cast<const BlockQ4_1*>(row);
      for (std::size_t i = 0; i < n / QK; ++i) {
        const float d = h2f(b[i].d), m = h2f(b[i].m);
        for (std::size_t j = 0; j < QK / 2; ++j) {
          out[i * QK + j] = static_cast<float>(b[i].qs[j] & 0x0F) * d + m;
          out[i * QK + j + QK / 2] = static_cast<float>(b[i].qs[j] >> 4) * d + m;
        }
      }
      return;
    }
    case DType::kQ8_0: {
      const auto* b = static_cast<const BlockQ8_0*>(row);
      for (std::size_t i = 0; i < n / QK; ++i) {
        const float d = h2f(b[i].d);
        for (std::size_t j = 0; j < QK; ++j) out[i * QK + j] = static_cast<float>(b[i].qs[j]) * d;
      }
      return;
    }
  }
  TG_CHECK(false);
}

DType activation_type(DType weight) {
  switch (weight) {
    case DType::kQ4_1: return DType::kQ4_1;  // stands for Q8_1 blocks
    case DType::kQ4_0: case DType::kQ8_0: return DType::kQ8_0;
    default: return DType::kF32;
  }
}

std::size_t activation_row_bytes(DType weight, std::size_t n) {
  switch (weight) {
    case DType::kQ4_1: return n / QK * sizeof(BlockQ8_1);
    case DType::kQ4_0: case DType::kQ8_0: return n / QK * sizeof(BlockQ8_0);
    default: return n * sizeof(float);
  }
}

void quantize_activation_row(DType weight, const float* x, void* out, std::size_t n) {
  switch (weight) {
    case DType::kQ4_1: quantize_row_q8_1(x, static_cast<BlockQ8_1*>(out), n); return;
    case DType::kQ4_0: case DType::kQ8_0: quantize_row_q8_0(x, static_cast<BlockQ8_0*>(out), n); return;
    default: std::copy_n(x, n, static_cast<float*>(out)); return;
  }
}

float dot_reference(DType weight, const void* w, const void* a, std::size_t n) {
  switch (weight) {
    case DType::kQ4_0: return dot_q4_0_ref(static_cast<const BlockQ4_0*>(w), static_cast<const BlockQ8_0*>(a), n / QK);
    case DType::kQ4_1: return dot_q4_1_ref(static_cast<const BlockQ4_1*>(w), static_cast<const BlockQ8_1*>(a), n / QK);
    case DType::kQ8_0: return dot_q8_0_ref(static_cast<const BlockQ8_0*>(w), static_cast<const BlockQ8_0*>(a), n / QK);
    default: return dot_float_ref(weight, w, static_cast<const float*>(a), n);
  }
}

float dot(DType weight, const void* w, const void* a, std::size_t n) {
#ifdef TG_AVX2
  // Quantised rows go through the matmul kernels (matmul.cpp); float rows are done here.
  switch (weight) {
    case DType::kF32: return dot_f32_avx2(static_cast<const float*>(w), static_cast<const float*>(a), n);
    case DType::kF16: return dot_f16_avx2(static_cast<const std::uint16_t*>(w), static_cast<const float*>(a), n);
    default: break;
  }
#endif
  return dot_reference(weight, w, a, n);
}

}  // namespace tiergate::kernels::cpu
