#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kernels/check.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/quant.h"

namespace tiergate::kernels::cpu {
namespace {

// Per-thread scratch for activation scales and the level's packed activations (the matmul is
// called from the engine thread only).
std::vector<float>& scale_scratch() {
  thread_local std::vector<float> scales;
  return scales;
}
std::vector<std::byte>& pack_scratch() {
  thread_local std::vector<std::byte> packed;
  return packed;
}

bool quantised(DType t) { return t == DType::kQ4_0 || t == DType::kQ4_1 || t == DType::kQ8_0; }

}  // namespace

std::vector<std::byte> pack_weight(const IsaKernels& isa, DType type, const void* weight, std::size_t rows,
                                   std::size_t cols) {
  if (!quantised(type)) return {};
  std::vector<std::byte> packed(isa.weight_pack_bytes(type, rows, cols));
  if (!packed.empty()) isa.pack_weight(type, static_cast<const std::byte*>(weight), rows, cols, packed.data());
  return packed;
}

void matmul(const MatmulParams& p, ThreadPool& pool, std::vector<std::byte>& scratch) {
  matmul(p, pool, scratch, active_kernels());
}

void matmul(const MatmulParams& p, ThreadPool& pool, std::vector<std::byte>& scratch, const IsaKernels& isa) {
  TG_CHECK(p.cols % block_elements(p.weight_type) == 0);
  const std::size_t w_bytes = row_bytes(p.weight_type, p.cols);
  const auto* w = static_cast<const std::byte*>(p.weight);
  if (!quantised(p.weight_type)) {
    pool.parallel_for(p.rows, [&](std::size_t begin, std::size_t end) {
      for (std::size_t t = 0; t < p.tokens; ++t) {
        for (std::size_t r = begin; r < end; ++r) {
          p.y[t * p.rows + r] = isa.dot_float(p.weight_type, w + r * w_bytes, p.x + t * p.cols, p.cols);
        }
      }
    });
    return;
  }

  const std::size_t act_bytes = activation_row_bytes(p.weight_type, p.cols);
  if (scratch.size() < act_bytes * p.tokens) scratch.resize(act_bytes * p.tokens);
  std::byte* act = scratch.data();
  // Activation block scales as floats, converted once per call rather than once per weight row.
  const std::size_t nb = p.cols / kQuantBlock;
  std::vector<float>& scales = scale_scratch();
  scales.resize(2 * nb * p.tokens);
  pool.parallel_for(p.tokens, [&](std::size_t begin, std::size_t end) {
    for (std::size_t t = begin; t < end; ++t) {
      std::byte* row = act + t * act_bytes;
      quantize_activation_row(p.weight_type, p.x + t * p.cols, row, p.cols);
      float* d = scales.data() + 2 * nb * t;
      if (p.weight_type == DType::kQ4_1) {
        const auto* b = reinterpret_cast<const BlockQ8_1*>(row);
        for (std::size_t i = 0; i < nb; ++i) d[i] = half_to_float(b[i].d), d[nb + i] = half_to_float(b[i].s);
      } else {
        const auto* b = reinterpret_cast<const BlockQ8_0*>(row);
        for (std::size_t i = 0; i < nb; ++i) d[i] = half_to_float(b[i].d), d[nb + i] = 0.0f;
      }
    }
  });

  QuantMatmulView v{p.weight_type, w,       w_bytes, p.rows, p.cols, act, act_bytes, scales.data(), p.tokens, nullptr,
                    p.y,           static_cast<const std::byte*>(p.packed_weight)};
  // Packed on the calling thread; the workers read the caller's buffers.
  if (const std::size_t bytes = isa.pack_bytes(v); bytes > 0) {
    std::vector<std::byte>& packed = pack_scratch();
    packed.resize(bytes + 64);
    auto* aligned = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(packed.data()) + 63) & ~std::uintptr_t{63});
    isa.pack(v, aligned);
    v.packed = aligned;
  }
  // Tiles of weight rows: a tile is read from memory once and stays in cache for every token.
  constexpr std::size_t kTile = 16;
  const std::size_t tiles = (p.rows + kTile - 1) / kTile;
  pool.parallel_for(tiles, [&](std::size_t begin, std::size_t end) {
    isa.quant_rows(v, begin * kTile, std::min(p.rows, end * kTile));
  });
}

}  // namespace tiergate::kernels::cpu
