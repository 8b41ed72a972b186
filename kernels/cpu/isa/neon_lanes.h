// lane_kernels.h's lane type on AArch64 Advanced SIMD: two 128-bit registers per lane set (lanes
// 0..3 and 4..7). Byte dot products use SDOT where the file is compiled with +dotprod, else
// widening multiplies and pairwise adds (exact either way). Include only from an isa/*.cpp after
// lane_kernels.h.
#pragma once

#include <arm_neon.h>

namespace tiergate::kernels::cpu::TG_ISA_NS {
namespace {

struct NeonLanes {
  struct F { float32x4_t lo, hi; };
  struct I { int32x4_t lo, hi; };
  struct B { int8x16_t lo, hi; };  // bytes 0..15 (lanes 0..3) and 16..31 (lanes 4..7)
  using SignedW = B;

  static F zero() { return set1(0.0f); }
  static F set1(float x) { return {vdupq_n_f32(x), vdupq_n_f32(x)}; }
  static F load(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4)}; }
  static void store(float* p, F x) {
    vst1q_f32(p, x.lo);
    vst1q_f32(p + 4, x.hi);
  }
  static F add(F a, F b) { return {vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)}; }
  static F sub(F a, F b) { return {vsubq_f32(a.lo, b.lo), vsubq_f32(a.hi, b.hi)}; }
  static F mul(F a, F b) { return {vmulq_f32(a.lo, b.lo), vmulq_f32(a.hi, b.hi)}; }
  static F div(F a, F b) { return {vdivq_f32(a.lo, b.lo), vdivq_f32(a.hi, b.hi)}; }
  static F fma(F a, F b, F c) { return {vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi)}; }
  static float h2f(std::uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
  }
  static float32x4_t h4(const std::uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
  static F load_h(const std::uint16_t* p) { return {h4(p), h4(p + 4)}; }
  static float32x4_t bf4(const std::uint16_t* p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }
  static F load_bf16(const std::uint16_t* p) { return {bf4(p), bf4(p + 4)}; }
  static float32x4_t r4(float32x4_t x) { return vcvt_f32_f16(vcvt_f16_f32(x)); }
  static F round_h(F x) { return {r4(x.lo), r4(x.hi)}; }
  static F cvt(I x) { return {vcvtq_f32_s32(x.lo), vcvtq_f32_s32(x.hi)}; }
  // Lane l + lane l + 4, then (0 + 2) + (1 + 3): the order of the x86 halving sum.
  static float hsum(F x) {
    const float32x4_t s = vaddq_f32(x.lo, x.hi);
    return (vgetq_lane_f32(s, 0) + vgetq_lane_f32(s, 2)) + (vgetq_lane_f32(s, 1) + vgetq_lane_f32(s, 3));
  }
  static std::int32_t hsum_i(I x) { return vaddvq_s32(vaddq_s32(x.lo, x.hi)); }
  static float32x4_t e4(float32x4_t n) {
    const int32x4_t e = vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
  }
  static F exp2i(F n) { return {e4(n.lo), e4(n.hi)}; }
  static bool all_abs_le(F x, float bound) {
    return vmaxvq_f32(vmaxq_f32(vabsq_f32(x.lo), vabsq_f32(x.hi))) <= bound;
  }

  static B load_b(const std::int8_t* p) { return {vld1q_s8(p), vld1q_s8(p + 16)}; }
  static B nibbles(const std::uint8_t* qs) {
    const uint8x16_t q = vld1q_u8(qs);
    return {vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F))), vreinterpretq_s8_u8(vshrq_n_u8(q, 4))};
  }
  static B sub8(B x) { return {vsubq_s8(x.lo, vdupq_n_s8(8)), vsubq_s8(x.hi, vdupq_n_s8(8))}; }
  static SignedW signed_weights(B x) { return x; }
  static int32x4_t dot16(int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(vdupq_n_s32(0), a, b);
#else
    const int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    const int32x4_t hi = vpaddlq_s16(vmull_high_s8(a, b));
    return vpaddq_s32(lo, hi);
#endif
  }
  // Both operands fit in int8 (Q4_1's nibbles are 0..15), so one signed product serves both.
  static I dot_us(B u, B s) { return {dot16(u.lo, s.lo), dot16(u.hi, s.hi)}; }
  static I dot_signed(SignedW w, B y) { return dot_us(w, y); }
};

}  // namespace
}  // namespace tiergate::kernels::cpu::TG_ISA_NS
