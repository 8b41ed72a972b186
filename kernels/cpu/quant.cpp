#include "kernels/cpu/quant.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "kernels/check.h"
#include "kernels/cpu/fp16.h"

namespace tiergate::kernels::cpu {
namespace {

constexpr std::size_t QK = kQuantBlock;

float h2f(std::uint16_t h) { return half_to_float(h); }

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

}  // namespace tiergate::kernels::cpu
