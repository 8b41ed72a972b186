#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "kernels/check.h"
#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/quant.h"

namespace tiergate::kernels::cpu {
namespace {

// Per-thread scratch, reused from call to call: activation scales, the level's packed activations,
// the call's views and tile offsets (the matmul is called from the engine thread only; the workers
// see the caller's through references).
struct Scratch {
  std::vector<float> scales;
  std::vector<std::byte> packed;
  std::vector<QuantMatmulView> views;
  std::vector<std::size_t> first_tile;
};
Scratch& call_scratch() {
  thread_local Scratch scratch;
  return scratch;
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
  matmul(std::span(&p, 1), pool, scratch, active_kernels());
}

void matmul(const MatmulParams& p, ThreadPool& pool, std::vector<std::byte>& scratch, const IsaKernels& isa) {
  matmul(std::span(&p, 1), pool, scratch, isa);
}

void matmul(std::span<const MatmulParams> ps, ThreadPool& pool, std::vector<std::byte>& scratch) {
  matmul(ps, pool, scratch, active_kernels());
}

void matmul(std::span<const MatmulParams> ps, ThreadPool& pool, std::vector<std::byte>& scratch, const IsaKernels& isa) {
  TG_CHECK(!ps.empty());
  const MatmulParams& first = ps.front();
  for (const MatmulParams& p : ps) {
    TG_CHECK(p.cols % block_elements(p.weight_type) == 0);
    TG_CHECK(p.x == first.x && p.tokens == first.tokens && p.cols == first.cols && p.weight_type == first.weight_type);
  }
  const DType type = first.weight_type;
  const std::size_t cols = first.cols, tokens = first.tokens;
  if (!quantised(type)) {
    for (const MatmulParams& p : ps) {
      const std::size_t w_bytes = row_bytes(type, cols);
      const auto* w = static_cast<const std::byte*>(p.weight);
      pool.parallel_for(p.rows, [&](std::size_t begin, std::size_t end) {
        for (std::size_t t = 0; t < tokens; ++t) {
          for (std::size_t r = begin; r < end; ++r) {
            p.y[t * p.rows + r] = isa.dot_float(type, w + r * w_bytes, p.x + t * cols, cols);
          }
        }
      });
    }
    return;
  }

  // The activations, quantised once for every weight, with their block scales as floats.
  const std::size_t act_bytes = activation_row_bytes(type, cols);
  if (scratch.size() < act_bytes * tokens) scratch.resize(act_bytes * tokens);
  std::byte* act = scratch.data();
  const std::size_t nb = cols / kQuantBlock;
  Scratch& reused = call_scratch();
  std::vector<float>& scales = reused.scales;
  scales.resize(2 * nb * tokens);
  pool.parallel_for(tokens, [&](std::size_t begin, std::size_t end) {
    for (std::size_t t = begin; t < end; ++t) {
      float* d = scales.data() + 2 * nb * t;
      isa.quantize_activations(type, first.x + t * cols, cols, act + t * act_bytes, d, d + nb);
    }
  });

  std::vector<QuantMatmulView>& views = reused.views;
  views.clear();
  for (const MatmulParams& p : ps) {
    views.push_back({type, static_cast<const std::byte*>(p.weight), row_bytes(type, cols), p.rows, cols, act, act_bytes,
                     scales.data(), tokens, nullptr, p.y, static_cast<const std::byte*>(p.packed_weight)});
  }
  // Packed on the calling thread, once for every weight (it depends on the activations only); the
  // workers read the caller's buffers.
  if (const std::size_t bytes = isa.pack_bytes(views.front()); bytes > 0) {
    std::vector<std::byte>& packed = reused.packed;
    packed.resize(bytes + 64);
    auto* aligned = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(packed.data()) + 63) & ~std::uintptr_t{63});
    isa.pack(views.front(), aligned);
    for (QuantMatmulView& v : views) v.packed = aligned;
  }
  // Tiles of weight rows, numbered across the weights in order: a tile is read from memory once
  // and stays in cache for every token; one parallel pass covers them all.
  constexpr std::size_t kTile = 16;
  std::vector<std::size_t>& first_tile = reused.first_tile;
  first_tile.assign(views.size() + 1, 0);
  for (std::size_t k = 0; k < views.size(); ++k) first_tile[k + 1] = first_tile[k] + (views[k].rows + kTile - 1) / kTile;
  pool.parallel_for(first_tile.back(), [&](std::size_t begin, std::size_t end) {
    for (std::size_t k = 0; k < views.size(); ++k) {
      const std::size_t b = std::max(begin, first_tile[k]), e = std::min(end, first_tile[k + 1]);
      if (b >= e) continue;
      const std::size_t r0 = (b - first_tile[k]) * kTile;
      isa.quant_rows(views[k], r0, std::min(views[k].rows, (e - first_tile[k]) * kTile));
    }
  });
}

}  // namespace tiergate::kernels::cpu
