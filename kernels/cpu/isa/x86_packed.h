// The quantised matmul over weights re-laid out eight rows at a time (the x86 levels; the engine
// packs its weights once at load). With the stored layout each block of a row costs two fp16
// conversions, a scalar scale, a broadcast and a scalar term of the minimum before its dot product
// even starts. Here eight rows' block i sit together: their d (and m) values convert in one
// instruction, their scales and minimum terms are one vector operation each, and the dot products
// run two rows per register; a group of eight rows meets every token while its blocks are in L1.
// Every lane still sees lane_kernels.h's row_q4_1 / row_signed operations in the same order, so
// the results are the same bits as the scalar reference's. The avx512 level reads the same layout
// (Q8_0 biased to unsigned bytes) with its own 512-bit group kernels.
//
// Include only from an x86 isa/*.cpp, after avx2_lanes.h.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tiergate::kernels::cpu::TG_ISA_NS {
namespace {

constexpr std::size_t kPackRows = 8;

// Block i of rows 8g .. 8g+7.
struct PackedQ4_1x8 {
  std::uint16_t d[kPackRows];
  std::uint16_t m[kPackRows];
  std::uint8_t qs[kPackRows][16];
};
struct PackedQ8_0x8 {
  std::uint16_t d[kPackRows];
  std::int8_t qs[kPackRows][32];
};

std::size_t packed_block_bytes(DType type) {
  switch (type) {
    case DType::kQ4_1: return sizeof(PackedQ4_1x8);
    case DType::kQ8_0: return sizeof(PackedQ8_0x8);
    default: return 0;
  }
}

std::size_t weight_pack_bytes(DType type, std::size_t rows, std::size_t cols) {
  return rows / kPackRows * (cols / kQuantBlock) * packed_block_bytes(type);
}

// Rows [0, rows - rows % 8) as [group][block]; the last rows % 8 rows stay in the stored layout.
void pack_weight(DType type, const std::byte* w, std::size_t rows, std::size_t cols, std::byte* out) {
  const std::size_t nb = cols / kQuantBlock, row_bytes = nb * (type == DType::kQ4_1 ? sizeof(BlockQ4_1) : sizeof(BlockQ8_0));
  for (std::size_t g = 0; g < rows / kPackRows; ++g) {
    for (std::size_t i = 0; i < nb; ++i) {
      for (std::size_t r = 0; r < kPackRows; ++r) {
        const std::byte* row = w + (g * kPackRows + r) * row_bytes;
        if (type == DType::kQ4_1) {
          auto& p = reinterpret_cast<PackedQ4_1x8*>(out)[g * nb + i];
          const auto& b = reinterpret_cast<const BlockQ4_1*>(row)[i];
          p.d[r] = b.d;
          p.m[r] = b.m;
          std::memcpy(p.qs[r], b.qs, sizeof b.qs);
        } else {
          auto& p = reinterpret_cast<PackedQ8_0x8*>(out)[g * nb + i];
          const auto& b = reinterpret_cast<const BlockQ8_0*>(row)[i];
          p.d[r] = b.d;
          std::memcpy(p.qs[r], b.qs, sizeof b.qs);
        }
      }
    }
  }
}

// Lanes [s_a x4 | s_b x4] of the eight rows' scales, for the row pair (a, b) = (2k, 2k + 1).
__m256 pair_scale(__m256 scales, int k) {
  return _mm256_permutevar8x32_ps(scales, _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1, 2 * k + 1,
                                                            2 * k + 1, 2 * k + 1));
}

// The reference's V::hsum of a row's 8 lanes, given lo = lanes 0..3 + lanes 4..7 (its first step).
float hsum_folded(__m128 lo) {
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// A row pair's accumulators hold [a lanes 0..3 | b lanes 0..3] (the low nibbles' products) and
// [a lanes 4..7 | b lanes 4..7] (the high ones'): adding them is the first step of each row's sum.
void store_pair(__m256 lo, __m256 hi, float* out) {
  const __m256 folded = _mm256_add_ps(lo, hi);
  out[0] = hsum_folded(_mm256_castps256_ps128(folded));
  out[1] = hsum_folded(_mm256_extractf128_ps(folded, 1));
}

void group_q4_1(const PackedQ4_1x8* g, const BlockQ8_1* y, const float* ad, const float* as, std::size_t nb,
                float* out) {
  using V = Avx2Lanes;
  __m256 acc_lo[4], acc_hi[4];
  for (int k = 0; k < 4; ++k) acc_lo[k] = acc_hi[k] = _mm256_setzero_ps();
  __m256 mins = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (std::size_t i = 0; i < nb; ++i) {
    const PackedQ4_1x8& b = g[i];
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.d)));
    const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.m)));
    mins = _mm256_add_ps(mins, _mm256_mul_ps(m, _mm256_set1_ps(as[i])));
    const __m256 scales = _mm256_mul_ps(d, _mm256_set1_ps(ad[i]));
    // Elements 0..15 of the token's block against the low nibbles, 16..31 against the high ones.
    const __m256i ylo = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y[i].qs)));
    const __m256i yhi = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y[i].qs + 16)));
    for (int k = 0; k < 4; ++k) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs[2 * k]));
      const __m256i lo = _mm256_and_si256(q, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
      const __m256 s = pair_scale(scales, k);
      acc_lo[k] = _mm256_fmadd_ps(s, V::cvt(V::dot_us(lo, ylo)), acc_lo[k]);
      acc_hi[k] = _mm256_fmadd_ps(s, V::cvt(V::dot_us(hi, yhi)), acc_hi[k]);
    }
  }
  alignas(32) float m[kPackRows];
  _mm256_store_ps(m, mins);
  for (int k = 0; k < 4; ++k) {
    store_pair(acc_lo[k], acc_hi[k], out + 2 * k);
    out[2 * k] += m[2 * k];
    out[2 * k + 1] += m[2 * k + 1];
  }
}

void group_q8_0(const PackedQ8_0x8* g, const BlockQ8_0* y, const float* ad, std::size_t nb, float* out) {
  using V = Avx2Lanes;
  // One accumulator per row; lanes as the reference's.
  __m256 acc[kPackRows];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (std::size_t i = 0; i < nb; ++i) {
    const PackedQ8_0x8& b = g[i];
    alignas(32) float scales[kPackRows];
    _mm256_store_ps(scales,
                    _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.d))),
                                  _mm256_set1_ps(ad[i])));
    const __m256i qy = V::load_b(y[i].qs);
    for (std::size_t r = 0; r < kPackRows; ++r) {
      const V::SignedW w = V::signed_weights(V::load_b(b.qs[r]));
      acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(scales + r), V::cvt(V::dot_signed(w, qy)), acc[r]);
    }
  }
  for (std::size_t r = 0; r < kPackRows; ++r) out[r] = V::hsum(acc[r]);
}

// Rows [r0, r1) for every token, the weight packed: whole groups from the packed layout (r0 is a
// multiple of 8), each group meeting every token while its blocks are in L1; the rows past the
// last whole group from the stored layout.
[[maybe_unused]] void packed_rows(const QuantMatmulView& v, std::size_t r0, std::size_t r1) {
  const std::size_t nb = v.cols / kQuantBlock;
  const std::size_t packed_end = v.rows / kPackRows * kPackRows;
  std::size_t r = r0;
  for (; r + kPackRows <= r1 && r < packed_end; r += kPackRows) {
    const std::size_t g = r / kPackRows;
    for (std::size_t t = 0; t < v.tokens; ++t) {
      const std::byte* act = v.act + t * v.act_row_bytes;
      const float* d = v.scales + 2 * nb * t;
      if (v.type == DType::kQ4_1) {
        group_q4_1(reinterpret_cast<const PackedQ4_1x8*>(v.packed_weight) + g * nb, reinterpret_cast<const BlockQ8_1*>(act), d,
                   d + nb, nb, v.y + t * v.rows + r);
      } else {
        group_q8_0(reinterpret_cast<const PackedQ8_0x8*>(v.packed_weight) + g * nb, reinterpret_cast<const BlockQ8_0*>(act), d,
                   nb, v.y + t * v.rows + r);
      }
    }
  }
  for (; r < r1; ++r) {
    for (std::size_t t0 = 0; t0 < v.tokens; t0 += kTokensPerPass) {
      row_times_tokens<Avx2Lanes>(v, r, t0, v.tokens - t0 < kTokensPerPass ? v.tokens - t0 : kTokensPerPass);
    }
  }
}

bool has_packed(const QuantMatmulView& v) {
  return v.packed_weight != nullptr && (v.type == DType::kQ4_1 || v.type == DType::kQ8_0);
}

}  // namespace
}  // namespace tiergate::kernels::cpu::TG_ISA_NS
