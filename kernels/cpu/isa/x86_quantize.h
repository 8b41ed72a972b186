// Activation quantisation with AVX2 (the x86 levels): quant.cpp's per-block arithmetic — d =
// max|x| / 127, q = x · (127 / max|x|) rounded to nearest even, Σq for Q8_1's s — eight elements
// per instruction. The maximum and the integer sum do not depend on their order and every other
// operation is the same IEEE operation on each element, so for finite x the row and its scales are
// the same bits as the scalar level's.
//
// Include only from an x86 isa/*.cpp, after avx2_lanes.h.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace tiergate::kernels::cpu::TG_ISA_NS {
namespace {

// One block: qs[32] and d; returns Σq.
int quantize_block_avx2(const float* x, std::int8_t* qs, float& d) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    amax = _mm256_max_ps(_mm256_andnot_ps(sign, v[k]), amax);  // a NaN element is skipped, as std::max(amax, nan) does
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float max_abs = _mm_cvtss_f32(m);
  const float id = max_abs != 0 ? 127.0f / max_abs : 0.0f;
  d = max_abs / 127.0f;
  const __m256 scale = _mm256_set1_ps(id);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) {
    q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  const __m256i sum32 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sum32), _mm256_extracti128_si256(sum32, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  // |q| <= 127: the saturating packs are exact; they interleave 128-bit lanes, which the permute undoes.
  const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  return _mm_cvtsi128_si32(s);
}

void quantize_activations_avx2(DType weight, const float* x, std::size_t n, std::byte* row, float* d, float* s) {
  const std::size_t nb = n / kQuantBlock;
  for (std::size_t i = 0; i < nb; ++i) {
    float di;
    if (weight == DType::kQ4_1) {
      auto& b = reinterpret_cast<BlockQ8_1*>(row)[i];
      const int sum = quantize_block_avx2(x + i * kQuantBlock, b.qs, di);
      b.d = float_to_half(di);
      b.s = float_to_half(di * static_cast<float>(sum));
      d[i] = half_to_float(b.d), s[i] = half_to_float(b.s);
    } else if (weight == DType::kQ4_0 || weight == DType::kQ8_0) {
      auto& b = reinterpret_cast<BlockQ8_0*>(row)[i];
      quantize_block_avx2(x + i * kQuantBlock, b.qs, di);
      b.d = float_to_half(di);
      d[i] = half_to_float(b.d), s[i] = 0.0f;
    } else {
      TG_CHECK(false && "activation quantisation for a float weight");
    }
  }
}

}  // namespace
}  // namespace tiergate::kernels::cpu::TG_ISA_NS
