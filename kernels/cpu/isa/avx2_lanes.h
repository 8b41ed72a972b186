// lane_kernels.h's lane type on x86 with AVX2, FMA and F16C: one __m256 / __m256i per lane set.
// Shared by the avx2 level and the avx512 level (compiled with VNNI, where the byte dot products
// become one vpdpbusd). Include only from an isa/*.cpp after lane_kernels.h.
#pragma once

#include <immintrin.h>

namespace tiergate::kernels::cpu::TG_ISA_NS {
namespace {

struct Avx2Lanes {
  using F = __m256;
  using I = __m256i;
  using B = __m256i;
  struct SignedW {  // |w| and the mask of w's signs, ready for an unsigned-by-signed product
    __m256i abs, sign;
  };

  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float x) { return _mm256_set1_ps(x); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, F x) { _mm256_storeu_ps(p, x); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static float h2f(std::uint16_t h) { return _cvtsh_ss(h); }
  static F load_h(const std::uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static F load_bf16(const std::uint16_t* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static F round_h(F x) { return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }
  static F cvt(I x) { return _mm256_cvtepi32_ps(x); }
  static float hsum(F v) {
    __m128 lo = _mm256_castps256_ps128(v);
    lo = _mm_add_ps(lo, _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
  }
  static std::int32_t hsum_i(I x) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
  }
  static F exp2i(F n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
  static bool all_abs_le(F x, float bound) {
    const F a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    return _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(bound), _CMP_LE_OQ)) == 0xFF;
  }

  static B load_b(const std::int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  // Elements 0..15 from the low nibbles of qs, 16..31 from the high ones.
  static B nibbles(const std::uint8_t* qs) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
  }
  static B sub8(B x) { return _mm256_sub_epi8(x, _mm256_set1_epi8(8)); }
  // Σ of 4 adjacent u8·s8 products per int32 lane. maddubs's int16 pair sums cannot saturate for
  // the ranges used here (|s| <= 127, u <= 127), so both forms give the exact sums.
  static I dot_us(B u, B s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
  }
  static SignedW signed_weights(B w) { return {_mm256_sign_epi8(w, w), w}; }
  // Lanes where w is 0 contribute 0 whatever y holds.
  static I dot_signed(const SignedW& w, B y) { return dot_us(w.abs, _mm256_sign_epi8(y, w.sign)); }
};

}  // namespace
}  // namespace tiergate::kernels::cpu::TG_ISA_NS
