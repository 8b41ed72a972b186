// The CPU kernels' arithmetic written once, over a level's lane type V (isa/*_lanes.h): 8 float
// lanes (V::F), 8 int32 lanes (V::I) and 32 int8 lanes (V::B), with each operation rounding as
// one IEEE operation, so every level that instantiates these templates computes the same bits.
// The order is the one isa_kernels.h states; the scalar level instantiates them with
// plain arrays and is the reference.
//
// Include only from a kernels/cpu/isa/*.cpp, after defining TG_ISA_NS: everything here then has
// internal linkage inside that level's namespace, so no function compiled with one level's flags
// can be picked by the linker for another level (or for the baseline code).
#pragma once

#ifndef TG_ISA_NS
#error "define TG_ISA_NS (the level's namespace) before including lane_kernels.h"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/check.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/quant.h"

namespace tiergate::kernels::cpu::TG_ISA_NS {
namespace {

constexpr std::size_t kTokensPerPass = 8;  // activation rows that share one unpacked weight block

// ---- quantised matmul: one weight row against up to kTokensPerPass activation rows ----
// The arithmetic of every level (isa_kernels.h): per block an exact int32 sum of the 32 byte
// products, then acc = fma(d_w * d_a, sum, acc) block after block (d_w * d_a is exact: a product
// of two fp16 values); Q4_1's minimum in a second sum, mins = fma(m_w, s_a, mins), added last.
// An integer sum does not depend on its order, so a level may lay the products out as suits its
// registers (x86_packed.h puts rows in lanes) and still give these bits.

template <class V>
void row_q4_1(const QuantMatmulView& v, const BlockQ4_1* w, std::size_t t0, std::size_t ntok, float* out) {
  const std::size_t nb = v.cols / kQuantBlock;
  float acc[kTokensPerPass], mins[kTokensPerPass];
  const BlockQ8_1* a[kTokensPerPass];
  const float* sc[kTokensPerPass];
  for (std::size_t t = 0; t < ntok; ++t) {
    acc[t] = mins[t] = 0.0f;
    a[t] = reinterpret_cast<const BlockQ8_1*>(v.act + (t0 + t) * v.act_row_bytes);
    sc[t] = v.scales + (t0 + t) * 2 * nb;
  }
  for (std::size_t i = 0; i < nb; ++i) {
    const float wd = V::h2f(w[i].d), wm = V::h2f(w[i].m);
    const typename V::B qx = V::nibbles(w[i].qs);
    for (std::size_t t = 0; t < ntok; ++t) {
      const auto sum = static_cast<float>(V::hsum_i(V::dot_us(qx, V::load_b(a[t][i].qs))));
      acc[t] = std::fma(wd * sc[t][i], sum, acc[t]);
      mins[t] = std::fma(wm, sc[t][nb + i], mins[t]);
    }
  }
  for (std::size_t t = 0; t < ntok; ++t) out[t] = acc[t] + mins[t];
}

// The 32 signed weights of a block: Q8_0 as stored, Q4_0 as nibbles minus 8.
template <class V>
typename V::B signed_block(const BlockQ8_0& b) {
  return V::load_b(b.qs);
}
template <class V>
typename V::B signed_block(const BlockQ4_0& b) {
  return V::sub8(V::nibbles(b.qs));
}

template <class V, class Block>
void row_signed(const QuantMatmulView& v, const Block* w, std::size_t t0, std::size_t ntok, float* out) {
  const std::size_t nb = v.cols / kQuantBlock;
  float acc[kTokensPerPass];
  const BlockQ8_0* a[kTokensPerPass];
  const float* sc[kTokensPerPass];
  for (std::size_t t = 0; t < ntok; ++t) {
    acc[t] = 0.0f;
    a[t] = reinterpret_cast<const BlockQ8_0*>(v.act + (t0 + t) * v.act_row_bytes);
    sc[t] = v.scales + (t0 + t) * 2 * nb;
  }
  for (std::size_t i = 0; i < nb; ++i) {
    const float wd = V::h2f(w[i].d);
    const typename V::SignedW qx = V::signed_weights(signed_block<V>(w[i]));
    for (std::size_t t = 0; t < ntok; ++t) {
      const auto sum = static_cast<float>(V::hsum_i(V::dot_signed(qx, V::load_b(a[t][i].qs))));
      acc[t] = std::fma(wd * sc[t][i], sum, acc[t]);
    }
  }
  for (std::size_t t = 0; t < ntok; ++t) out[t] = acc[t];
}

// y[t0 .. t0 + ntok)[r] for one weight row.
template <class V>
void row_times_tokens(const QuantMatmulView& v, std::size_t r, std::size_t t0, std::size_t ntok) {
  const std::byte* w = v.weight + r * v.w_row_bytes;
  float out[kTokensPerPass];
  switch (v.type) {
    case DType::kQ4_1: row_q4_1<V>(v, reinterpret_cast<const BlockQ4_1*>(w), t0, ntok, out); break;
    case DType::kQ8_0: row_signed<V>(v, reinterpret_cast<const BlockQ8_0*>(w), t0, ntok, out); break;
    case DType::kQ4_0: row_signed<V>(v, reinterpret_cast<const BlockQ4_0*>(w), t0, ntok, out); break;
    default: TG_CHECK(false && "quantised matmul of a float type");
  }
  for (std::size_t t = 0; t < ntok; ++t) v.y[(t0 + t) * v.rows + r] = out[t];
}

// Rows [r0, r1): for each group of kTokensPerPass tokens every row of the range, so the range's
// weights are read from memory once and stay in cache for all the groups.
template <class V>
void quant_rows(const QuantMatmulView& v, std::size_t r0, std::size_t r1) {
  for (std::size_t t0 = 0; t0 < v.tokens; t0 += kTokensPerPass) {
    const std::size_t ntok = v.tokens - t0 < kTokensPerPass ? v.tokens - t0 : kTokensPerPass;
    for (std::size_t r = r0; r < r1; ++r) row_times_tokens<V>(v, r, t0, ntok);
  }
}

// ---- float dot products in ggml's order ----
// Per 64 elements four accumulators of 16 lanes (two V::F each) with fused multiply-adds, folded
// 0+2, 1+3, then 0+1, the 16 lanes halved onto 8 and summed by V::hsum; any tail in double.

template <class V, DType kType>
typename V::F load_row(const void* base, std::size_t i) {
  if constexpr (kType == DType::kF32) {
    return V::load(static_cast<const float*>(base) + i);
  } else if constexpr (kType == DType::kF16) {
    return V::load_h(static_cast<const std::uint16_t*>(base) + i);
  } else {
    return V::load_bf16(static_cast<const std::uint16_t*>(base) + i);
  }
}

template <class V, DType kType>
float element(const void* base, std::size_t i) {
  if constexpr (kType == DType::kF32) {
    return static_cast<const float*>(base)[i];
  } else if constexpr (kType == DType::kF16) {
    return V::h2f(static_cast<const std::uint16_t*>(base)[i]);
  } else {
    const std::uint32_t bits = static_cast<std::uint32_t>(static_cast<const std::uint16_t*>(base)[i]) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
}

// Σ x[off + i] · y[i] over n, x in kType.
template <class V, DType kType>
float dot_ggml(const void* x, std::size_t off, const float* y, std::size_t n) {
  using F = typename V::F;
  F acc[4][2];
  for (auto& a : acc) a[0] = a[1] = V::zero();
  const std::size_t np = n & ~std::size_t{63};
  for (std::size_t i = 0; i < np; i += 64) {
    for (std::size_t j = 0; j < 4; ++j) {
      for (std::size_t h = 0; h < 2; ++h) {
        const std::size_t e = i + 16 * j + 8 * h;
        acc[j][h] = V::fma(load_row<V, kType>(x, off + e), V::load(y + e), acc[j][h]);
      }
    }
  }
  const F lo = V::add(V::add(acc[0][0], acc[2][0]), V::add(acc[1][0], acc[3][0]));
  const F hi = V::add(V::add(acc[0][1], acc[2][1]), V::add(acc[1][1], acc[3][1]));
  double sum = static_cast<double>(V::hsum(V::add(hi, lo)));
  for (std::size_t i = np; i < n; ++i) sum += static_cast<double>(element<V, kType>(x, off + i) * y[i]);
  return static_cast<float>(sum);
}

template <class V>
float dot_float(DType type, const void* w, const float* x, std::size_t n) {
  switch (type) {
    case DType::kF32: return dot_ggml<V, DType::kF32>(w, 0, x, n);
    case DType::kF16: return dot_ggml<V, DType::kF16>(w, 0, x, n);
    case DType::kBF16: return dot_ggml<V, DType::kBF16>(w, 0, x, n);
    default: TG_CHECK(false && "dot_float of a quantised type");
  }
  return 0.0f;
}

// ---- paged attention: every query head of one KV head, for one token ----
// Flash attention's one-pass online softmax over the keys in order, with libm's expf. An F16 cache
// follows ggml's F16 flash attention: queries rounded to fp16, the value accumulator rounded to
// fp16 after every operation, the denominator updated with a fused multiply-add. F32 and BF16
// caches (BF16 widened exactly) keep fp32 accumulators.

template <class V, DType kType>
void attend_typed(const AttentionGroupJob& job) {
  using F = typename V::F;
  constexpr bool kHalf = kType == DType::kF16;
  const PagedKv& kv = *job.kv;
  const std::size_t D = kv.head_dim, G = job.group;
  float* q = job.scratch;      // [G, D]
  float* acc = q + G * D;      // [G, D]
  float* max = acc + G * D;    // [G]
  float* sum = max + G;        // [G]
  for (std::size_t i = 0; i < G * D; i += 8) {
    const F x = V::load(job.q + i);
    V::store(q + i, kHalf ? V::round_h(x) : x);
    V::store(acc + i, V::zero());
  }
  for (std::size_t g = 0; g < G; ++g) max[g] = -INFINITY, sum[g] = 0.0f;
  const auto seq = static_cast<std::size_t>(job.layout->token_seq[job.token]);
  const auto pos = static_cast<std::size_t>(job.layout->token_pos[job.token]);
  for (std::size_t j = 0; j <= pos; ++j) {
    const std::size_t off = kv_slot_offset(kv, *job.layout, seq, j, job.kv_head);
    for (std::size_t g = 0; g < G; ++g) {  // the key and value rows stay in L1 across the group
      const float s = dot_ggml<V, kType>(kv.k, off, q + g * D, D) * job.scale;
      float* a = acc + g * D;
      float ms = 1.0f, vs = 1.0f;
      if (s > max[g]) {
        const float old = max[g];
        max[g] = s;
        ms = std::exp(old - s);
        const F msv = V::set1(ms);
        for (std::size_t d = 0; d < D; d += 8) {
          const F r = V::mul(V::load(a + d), msv);
          V::store(a + d, kHalf ? V::round_h(r) : r);
        }
      } else {
        vs = std::exp(s - max[g]);
      }
      const F vsv = V::set1(vs);
      for (std::size_t d = 0; d < D; d += 8) {
        const F r = V::fma(load_row<V, kType>(kv.v, off + d), vsv, V::load(a + d));
        V::store(a + d, kHalf ? V::round_h(r) : r);
      }
      sum[g] = kHalf ? std::fma(sum[g], ms, vs) : sum[g] * ms + vs;
    }
  }
  for (std::size_t g = 0; g < G; ++g) {
    const F inv = V::set1(sum[g] == 0.0f ? 0.0f : 1.0f / sum[g]);
    for (std::size_t d = 0; d < D; d += 8) V::store(job.out + g * D + d, V::mul(V::load(acc + g * D + d), inv));
  }
}

template <class V>
void attend(const AttentionGroupJob& job) {
  TG_CHECK(job.kv->head_dim % 8 == 0);
  switch (job.kv->dtype) {
    case DType::kF16: attend_typed<V, DType::kF16>(job); return;
    case DType::kF32: attend_typed<V, DType::kF32>(job); return;
    case DType::kBF16: attend_typed<V, DType::kBF16>(job); return;
    default: TG_CHECK(false && "KV cache dtype");
  }
}

// ---- SiLU ----
// e^x as ggml's vectorised SiLU computes it: Cody-Waite reduction to 2^n · e^b (|b| <= ln2/2) and
// a degree-5 polynomial (the method and coefficients of Arm's optimized-routines expf). Within
// ~1.5 ulp of expf but not equal to it; matching it bit for bit is what keeps activations equal
// to llama.cpp's. 2^n is applied exactly (V::exp2i) where |n| <= 126 in every lane, else lane by
// lane with ldexp (the same correctly rounded result; 0 or infinity past |n| = 192).
template <class V>
typename V::F exp_poly(typename V::F x) {
  using F = typename V::F;
  const F shift = V::set1(0x1.8p23f);  // 1.5 · 2^23: adding it rounds to an integer
  const F z = V::fma(x, V::set1(0x1.715476p+0f), shift);
  const F n = V::sub(z, shift);
  const F b = V::fma(n, V::set1(-0x1.7f7d1cp-20f), V::fma(n, V::set1(-0x1.62e4p-1f), x));  // x - n·ln2
  const F u = V::mul(b, b);
  const F j = V::fma(V::fma(V::fma(V::set1(0x1.0e4020p-7f), b, V::set1(0x1.573e2ep-5f)), u,
                            V::fma(V::set1(0x1.555e66p-3f), b, V::set1(0x1.fffdb6p-2f))),
                     u, V::fma(V::set1(0x1.ffffecp-1f), b, V::set1(1.0f)));
  if (V::all_abs_le(n, 126.0f)) return V::mul(j, V::exp2i(n));
  float jl[8], nl[8];
  V::store(jl, j);
  V::store(nl, n);
  for (std::size_t l = 0; l < 8; ++l) {
    jl[l] = std::fabs(nl[l]) > 192 ? (nl[l] > 0 ? INFINITY : 0.0f) : std::ldexp(jl[l], static_cast<int>(nl[l]));
  }
  return V::load(jl);
}

// ggml evaluates whole 16-lane vectors with the polynomial and any tail with expf.
template <class V>
void silu_mul(const float* gate, const float* up, float* out, std::size_t n) {
  using F = typename V::F;
  const std::size_t vectorised = n & ~std::size_t{15};
  for (std::size_t i = 0; i < vectorised; i += 8) {
    const F x = V::load(gate + i);
    const F e = exp_poly<V>(V::sub(V::zero(), x));
    const F silu = V::div(x, V::add(V::set1(1.0f), e));
    V::store(out + i, V::mul(silu, V::load(up + i)));
  }
  for (std::size_t i = vectorised; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// Activation quantisation as quant.cpp writes it out, element by element.
void quantize_activations_scalar(DType weight, const float* x, std::size_t n, std::byte* row, float* d, float* s) {
  quantize_activation_row(weight, x, row, n);
  const std::size_t nb = n / kQuantBlock;
  for (std::size_t i = 0; i < nb; ++i) {
    if (weight == DType::kQ4_1) {
      const auto& b = reinterpret_cast<const BlockQ8_1*>(row)[i];
      d[i] = half_to_float(b.d), s[i] = half_to_float(b.s);
    } else {
      d[i] = half_to_float(reinterpret_cast<const BlockQ8_0*>(row)[i].d), s[i] = 0.0f;
    }
  }
}

std::size_t no_pack_bytes(const QuantMatmulView&) { return 0; }
void no_pack(const QuantMatmulView&, std::byte*) {}
std::size_t no_weight_pack_bytes(DType, std::size_t, std::size_t) { return 0; }
void no_pack_weight(DType, const std::byte*, std::size_t, std::size_t, std::byte*) {}

// The table of a level whose matmul needs no packing.
template <class V>
IsaKernels lane_table(CpuIsa isa) {
  return IsaKernels{isa,       no_pack_bytes, no_pack, quant_rows<V>, dot_float<V>, attend<V>, silu_mul<V>,
                    quantize_activations_scalar, no_weight_pack_bytes, no_pack_weight};
}

}  // namespace
}  // namespace tiergate::kernels::cpu::TG_ISA_NS
