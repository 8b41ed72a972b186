// The quantised matmul over weights re-laid out eight rows at a time (the x86 levels; the engine
// packs its weights once at load). With the stored layout each block of a row costs two fp16
// conversions, a scalar scale, a broadcast and a scalar term of the minimum before its dot product
// even starts. Here eight rows' block i sit together: their d (and m) values convert in one
// instruction, their scales and minimum terms are one vector operation each, and the dot products
// run several rows per register; a group of eight rows meets every token while its blocks are in
// L1. Here: the layout, its packing and the walk over a call's rows; each level's group kernels
// (avx2.cpp, avx512.cpp, whose Q8_0 is biased to unsigned bytes) see lane_kernels.h's row_q4_1 /
// row_signed operations in the same order, lane for lane, so the results are the same bits as the
// scalar reference's.
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

// The reference's V::hsum of a row's 8 lanes, given lo = lanes 0..3 + lanes 4..7 (its first step).
float hsum_folded(__m128 lo) {
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// Rows [r0, r1) for every token, the weight packed: whole groups through the level's
// group(v, r) (rows r .. r+7, every token, while the group's blocks are in L1; r0 is a multiple
// of 8), the rows past the last whole group from the stored layout.
template <class Group>
void packed_rows(const QuantMatmulView& v, std::size_t r0, std::size_t r1, Group group) {
  const std::size_t packed_end = v.rows / kPackRows * kPackRows;
  std::size_t r = r0;
  for (; r + kPackRows <= r1 && r < packed_end; r += kPackRows) group(v, r);
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
