// Small AVX2 helpers shared by the CPU kernels. Include only from kernels/cpu/*.cpp: those are
// all compiled with the same instruction-set flags, so the inline definitions agree.
#pragma once

#if defined(__AVX2__)
#include <immintrin.h>

#include <cstdint>

namespace tiergate::kernels::cpu::simd {

// Sum of 8 lanes: halves, then pairs, then the last two (the order ggml's 256-bit kernels use).
inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  lo = _mm_add_ps(lo, _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// 32 four-bit values: elements 0..15 from the low nibbles of qs, 16..31 from the high ones.
inline __m256i unpack_nibbles(const std::uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

}  // namespace tiergate::kernels::cpu::simd
#endif
