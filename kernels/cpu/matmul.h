// y = x · Wᵀ with W kept in its stored (possibly quantised) format: activations are quantised once
// per call to the weight type's activation format, then tiles of weight rows are split across the
// pool's threads and each tile meets every token while it is in cache (isa_kernels.h). The
// results are the same bits at every ISA level and whatever the batch. Engine-thread only (it
// owns the pool and the scratch).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/tensor_type.h"

namespace tiergate::kernels::cpu {

struct MatmulParams {
  const void* weight = nullptr;  // [rows, cols] in weight_type, one output feature per row
  DType weight_type = DType::kF32;
  std::size_t rows = 0;          // output features
  std::size_t cols = 0;          // input features (a multiple of 32 for quantised types)
  const float* x = nullptr;      // [tokens, cols]
  float* y = nullptr;            // [tokens, rows]
  std::size_t tokens = 0;
  const void* packed_weight = nullptr;  // pack_weight()'s copy of weight for the same level, or null
};

// The level's re-layout of a quantised weight for its faster kernels (isa_kernels.h), empty where
// the level has none. Pass it as MatmulParams::packed_weight with the weight itself, to calls at
// that level only.
std::vector<std::byte> pack_weight(const IsaKernels& isa, DType type, const void* weight, std::size_t rows,
                                   std::size_t cols);

// At the process's ISA level (active_kernels()).
void matmul(const MatmulParams& p, ThreadPool& pool, std::vector<std::byte>& scratch);
// At a given level (tests compare the levels).
void matmul(const MatmulParams& p, ThreadPool& pool, std::vector<std::byte>& scratch, const IsaKernels& isa);
// Several weights on the same activations (x, tokens, cols and weight type alike; q/k/v, gate/up):
// the activations quantised once and every weight's rows in one parallel pass, each y as if alone.
void matmul(std::span<const MatmulParams> ps, ThreadPool& pool, std::vector<std::byte>& scratch);
void matmul(std::span<const MatmulParams> ps, ThreadPool& pool, std::vector<std::byte>& scratch, const IsaKernels& isa);

}  // namespace tiergate::kernels::cpu
