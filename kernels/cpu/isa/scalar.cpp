// The scalar level: lane_kernels.h over plain arrays, compiled for the architecture's baseline.
// Slow, portable, and the reference every other level is tested against bit for bit.
#define TG_ISA_NS scalar_isa
#include "kernels/cpu/isa/lane_kernels.h"

#include <cmath>

#include "kernels/cpu/fp16.h"

namespace tiergate::kernels::cpu::scalar_isa {
namespace {

struct ScalarLanes {
  struct F { float v[8]; };
  struct I { std::int32_t v[8]; };
  struct B { std::int8_t v[32]; };  // byte j holds element j of a block
  using SignedW = B;

  static F zero() { return set1(0.0f); }
  static F set1(float x) {
    F r;
    for (float& l : r.v) l = x;
    return r;
  }
  static F load(const float* p) {
    F r;
    std::memcpy(r.v, p, sizeof r.v);
    return r;
  }
  static void store(float* p, F x) { std::memcpy(p, x.v, sizeof x.v); }
  template <class Op>
  static F map(F a, F b, Op op) {
    for (int l = 0; l < 8; ++l) a.v[l] = op(a.v[l], b.v[l]);
    return a;
  }
  static F add(F a, F b) { return map(a, b, [](float x, float y) { return x + y; }); }
  static F sub(F a, F b) { return map(a, b, [](float x, float y) { return x - y; }); }
  static F mul(F a, F b) { return map(a, b, [](float x, float y) { return x * y; }); }
  static F div(F a, F b) { return map(a, b, [](float x, float y) { return x / y; }); }
  static F fma(F a, F b, F c) {
    for (int l = 0; l < 8; ++l) c.v[l] = std::fma(a.v[l], b.v[l], c.v[l]);
    return c;
  }
  static float h2f(std::uint16_t h) { return half_to_float(h); }
  static F load_h(const std::uint16_t* p) {
    F r;
    for (int l = 0; l < 8; ++l) r.v[l] = half_to_float(p[l]);
    return r;
  }
  static F load_bf16(const std::uint16_t* p) {
    F r;
    for (int l = 0; l < 8; ++l) r.v[l] = bf16_to_float(p[l]);
    return r;
  }
  static F round_h(F x) {
    for (float& l : x.v) l = half_to_float(float_to_half(l));
    return x;
  }
  static F cvt(I x) {
    F r;
    for (int l = 0; l < 8; ++l) r.v[l] = static_cast<float>(x.v[l]);
    return r;
  }
  // Lane l + lane l + 4, then (0 + 2) + (1 + 3): the order of the x86 halving sum.
  static float hsum(F x) {
    float s[4];
    for (int l = 0; l < 4; ++l) s[l] = x.v[l] + x.v[l + 4];
    return (s[0] + s[2]) + (s[1] + s[3]);
  }
  static std::int32_t hsum_i(I x) {
    std::int32_t s = 0;
    for (std::int32_t l : x.v) s += l;
    return s;
  }
  static F exp2i(F n) {
    for (float& l : n.v) l = std::ldexp(1.0f, static_cast<int>(l));
    return n;
  }
  static bool all_abs_le(F x, float bound) {
    for (float l : x.v) {
      if (!(std::fabs(l) <= bound)) return false;
    }
    return true;
  }

  static B load_b(const std::int8_t* p) {
    B r;
    std::memcpy(r.v, p, sizeof r.v);
    return r;
  }
  static B nibbles(const std::uint8_t* qs) {
    B r;
    for (int j = 0; j < 16; ++j) {
      r.v[j] = static_cast<std::int8_t>(qs[j] & 0x0F);
      r.v[j + 16] = static_cast<std::int8_t>(qs[j] >> 4);
    }
    return r;
  }
  static B sub8(B x) {
    for (std::int8_t& l : x.v) l = static_cast<std::int8_t>(l - 8);
    return x;
  }
  static SignedW signed_weights(B x) { return x; }
  // Lane l: the four products of bytes 4l .. 4l + 3, exactly.
  static I dot_us(B u, B s) {
    I r;
    for (int l = 0; l < 8; ++l) {
      int sum = 0;
      for (int k = 0; k < 4; ++k) sum += u.v[4 * l + k] * s.v[4 * l + k];
      r.v[l] = sum;
    }
    return r;
  }
  static I dot_signed(SignedW w, B y) { return dot_us(w, y); }
};

}  // namespace

const IsaKernels& table() {
  static const IsaKernels t = lane_table<ScalarLanes>(CpuIsa::kScalar);
  return t;
}

}  // namespace tiergate::kernels::cpu::scalar_isa
