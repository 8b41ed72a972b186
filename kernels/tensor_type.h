// Element types of weights and activations, numbered as ggml numbers them (so a GGUF tensor's type
// id converts directly), with their block geometry. Shared by kernels/cpu and kernels/cuda.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tiergate::kernels {

enum class DType : std::uint32_t { kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8, kBF16 = 30 };

inline constexpr std::size_t kQuantBlock = 32;  // elements per block of every quantised type

// Elements per block (1 for float types) and bytes per block.
constexpr std::size_t block_elements(DType t) {
  return t == DType::kQ4_0 || t == DType::kQ4_1 || t == DType::kQ8_0 ? kQuantBlock : 1;
}
constexpr std::size_t block_bytes(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: case DType::kBF16: return 2;
    case DType::kQ4_0: return 18;
    case DType::kQ4_1: return 20;
    case DType::kQ8_0: return 34;
  }
  return 0;
}
constexpr std::size_t row_bytes(DType t, std::size_t elements) {
  return elements / block_elements(t) * block_bytes(t);
}

// Block layouts, bit-compatible with ggml's. Four-bit types pack element j in the low nibble of
// qs[j] and element j + 16 in the high nibble.
struct BlockQ4_0 {
  std::uint16_t d;  // fp16 scale
  std::uint8_t qs[16];
};
struct BlockQ4_1 {
  std::uint16_t d;  // fp16 scale
  std::uint16_t m;  // fp16 minimum
  std::uint8_t qs[16];
};
struct BlockQ8_0 {
  std::uint16_t d;
  std::int8_t qs[32];
};
// Activations quantised for a Q4_1 dot product: s = d * sum(qs) carries the minimum's share.
struct BlockQ8_1 {
  std::uint16_t d;
  std::uint16_t s;
  std::int8_t qs[32];
};
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ8_0) == 34 &&
              sizeof(BlockQ8_1) == 36);

}  // namespace tiergate::kernels
