// The quantised matmul over weights re-laid out R rows at a time (the x86 levels; the engine packs
// its weights once at load): block i of rows R·g .. R·g + R - 1 together, with the rows in the
// lanes of a register. Register j of a block holds every row's bytes 4j .. 4j + 3 in its 32-bit
// lane, so one broadcast of the token's activation bytes 4j .. 4j + 3 meets R rows at once, the
// byte products of a row sum inside its own lane, and the block's d (and m) values of all R rows
// convert in one instruction. Nothing is summed across lanes. A group of R rows meets every token
// while its blocks are in L1.
// Here: the layout, its packing and the walk over a call's rows; each level's group kernels live
// in its own file (avx2.cpp: R = 8; avx512.cpp: R = 16). They compute lane_kernels.h's arithmetic:
// exact int32 block sums, then the same fused multiply-adds in the same order for every row.
//
// Include only from an x86 isa/*.cpp, after avx2_lanes.h.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tiergate::kernels::cpu::TG_ISA_NS {
namespace {

// Block i of R rows. Q4_1: qs[j][r] = row r's bytes 4j .. 4j + 3, i.e. elements 4j .. 4j + 3 in
// the low nibbles and 16 + 4j .. 16 + 4j + 3 in the high ones. Q8_0: qs[j][r] = row r's elements
// 4j .. 4j + 3, as stored, or biased by 128 (stored ^ 0x80, unsigned) where kBias.
template <std::size_t R>
struct PackedQ4_1 {
  std::uint16_t d[R];
  std::uint16_t m[R];
  std::uint8_t qs[4][R][4];
};
template <std::size_t R>
struct PackedQ8_0 {
  std::uint16_t d[R];
  std::uint8_t qs[8][R][4];
};

template <std::size_t R>
std::size_t packed_block_bytes(DType type) {
  switch (type) {
    case DType::kQ4_1: return sizeof(PackedQ4_1<R>);
    case DType::kQ8_0: return sizeof(PackedQ8_0<R>);
    default: return 0;
  }
}

template <std::size_t R>
std::size_t weight_pack_bytes(DType type, std::size_t rows, std::size_t cols) {
  return rows / R * (cols / kQuantBlock) * packed_block_bytes<R>(type);
}

// Rows [0, rows - rows % R) as [group][block]; the last rows % R rows stay in the stored layout.
template <std::size_t R, bool kBias>
void pack_weight(DType type, const std::byte* w, std::size_t rows, std::size_t cols, std::byte* out) {
  const std::size_t nb = cols / kQuantBlock, row_bytes = nb * (type == DType::kQ4_1 ? sizeof(BlockQ4_1) : sizeof(BlockQ8_0));
  for (std::size_t g = 0; g < rows / R; ++g) {
    for (std::size_t i = 0; i < nb; ++i) {
      for (std::size_t r = 0; r < R; ++r) {
        const std::byte* row = w + (g * R + r) * row_bytes;
        if (type == DType::kQ4_1) {
          auto& p = reinterpret_cast<PackedQ4_1<R>*>(out)[g * nb + i];
          const auto& b = reinterpret_cast<const BlockQ4_1*>(row)[i];
          p.d[r] = b.d;
          p.m[r] = b.m;
          for (std::size_t j = 0; j < 4; ++j) std::memcpy(p.qs[j][r], b.qs + 4 * j, 4);
        } else {
          auto& p = reinterpret_cast<PackedQ8_0<R>*>(out)[g * nb + i];
          const auto& b = reinterpret_cast<const BlockQ8_0*>(row)[i];
          p.d[r] = b.d;
          for (std::size_t j = 0; j < 8; ++j) {
            for (std::size_t k = 0; k < 4; ++k) {
              const auto q = static_cast<std::uint8_t>(b.qs[4 * j + k]);
              p.qs[j][r][k] = kBias ? static_cast<std::uint8_t>(q ^ 0x80) : q;
            }
          }
        }
      }
    }
  }
}

// The token's activation bytes 4j .. 4j + 3 in every 32-bit lane.
inline std::int32_t act_quad(const std::int8_t* qs, std::size_t j) {
  std::int32_t q;
  std::memcpy(&q, qs + 4 * j, 4);
  return q;
}

// Tokens t0 .. t0 + T - 1 of a call: their activation blocks and block scales.
template <std::size_t T, class Block>
struct TokenSpan {
  const Block* y[T];
  const float* d[T];  // the token's d per block, then (Q8_1) its s per block
  TokenSpan(const QuantMatmulView& v, std::size_t t0) {
    for (std::size_t t = 0; t < T; ++t) {
      y[t] = reinterpret_cast<const Block*>(v.act + (t0 + t) * v.act_row_bytes);
      d[t] = v.scales + 2 * (v.cols / kQuantBlock) * (t0 + t);
    }
  }
};

bool has_packed(const QuantMatmulView& v) {
  return v.packed_weight != nullptr && (v.type == DType::kQ4_1 || v.type == DType::kQ8_0);
}

// Rows [r0, r1) for every token (r0 a multiple of L::kRows). With the weight packed: each whole
// group through the level's group kernels, L::template q4_1<T> / q8_0<T>(v, the group's blocks,
// first row, first token) for up to 4 tokens at a time, while the group's blocks are in L1; the
// rows past the last whole group, and unpacked weights, from the stored layout.
template <class L>
void quant_rows_packed(const QuantMatmulView& v, std::size_t r0, std::size_t r1) {
  if (!has_packed(v)) return quant_rows<Avx2Lanes>(v, r0, r1);
  constexpr std::size_t R = L::kRows;
  const std::size_t nb = v.cols / kQuantBlock, packed_end = v.rows / R * R;
  std::size_t r = r0;
  for (; r + R <= r1 && r < packed_end; r += R) {
    const std::size_t first = r / R * nb;
    for (std::size_t t0 = 0; t0 < v.tokens; t0 += 4) {
      auto group = [&]<std::size_t T>() {
        if (v.type == DType::kQ4_1) {
          L::template q4_1<T>(v, reinterpret_cast<const PackedQ4_1<R>*>(v.packed_weight) + first, r, t0);
        } else {
          L::template q8_0<T>(v, reinterpret_cast<const PackedQ8_0<R>*>(v.packed_weight) + first, r, t0);
        }
      };
      switch (v.tokens - t0) {
        case 1: group.template operator()<1>(); break;
        case 2: group.template operator()<2>(); break;
        case 3: group.template operator()<3>(); break;
        default: group.template operator()<4>(); break;
      }
    }
  }
  for (; r < r1; ++r) {
    for (std::size_t t0 = 0; t0 < v.tokens; t0 += kTokensPerPass) {
      row_times_tokens<Avx2Lanes>(v, r, t0, v.tokens - t0 < kTokensPerPass ? v.tokens - t0 : kTokensPerPass);
    }
  }
}

}  // namespace
}  // namespace tiergate::kernels::cpu::TG_ISA_NS
