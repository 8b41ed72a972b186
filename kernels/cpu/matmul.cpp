#include "kernels/cpu/matmul.h"

#include <algorithm>

#include "kernels/check.h"
#include "kernels/cpu/quant.h"

namespace tiergate::kernels::cpu {

void matmul(const MatmulParams& p, ThreadPool& pool, std::vector<std::byte>& scratch) {
  TG_CHECK(p.cols % block_elements(p.weight_type) == 0);
  const std::size_t act_bytes = activation_row_bytes(p.weight_type, p.cols);
  if (scratch.size() < act_bytes * p.tokens) scratch.resize(act_bytes * p.tokens);
  std::byte* act = scratch.data();
  pool.parallel_for(p.tokens, [&](std::size_t begin, std::size_t end) {
    for (std::size_t t = begin; t < end; ++t) {
      quantize_activation_row(p.weight_type, p.x + t * p.cols, act + t * act_bytes, p.cols);
    }
  });
  const std::size_t w_bytes = row_bytes(p.weight_type, p.cols);
  const auto* w = static_cast<const std::byte*>(p.weight);
  // Tiles of weight rows: each tile is read once from memory and reused for every token.
  constexpr std::size_t kTile = 16;
  const std::size_t tiles = (p.rows + kTile - 1) / kTile;
  pool.parallel_for(tiles, [&](std::size_t begin, std::size_t end) {
    for (std::size_t tile = begin; tile < end; ++tile) {
      const std::size_t r0 = tile * kTile, r1 = std::min(p.rows, r0 + kTile);
      for (std::size_t t = 0; t < p.tokens; ++t) {
        const std::byte* a = act + t * act_bytes;
        float* y = p.y + t * p.rows;
        for (std::size_t r = r0; r < r1; ++r) y[r] = dot(p.weight_type, w + r * w_bytes, a, p.cols);
      }
    }
  });
}

}  // namespace tiergate::kernels::cpu
