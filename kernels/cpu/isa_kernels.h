// The table of per-instruction-set kernels: one entry per ISA level (kernels/cpu/isa/*.cpp, each
// compiled with its own -m flags), chosen at run time by cpu_isa.h. Every level computes the same
// arithmetic, so greedy output does not depend on the CPU: the quantised matmul as exact int32
// block sums fused into each row's float sum block by block (lane_kernels.h), float dot products
// in ggml's AVX-512 order (fp32 sums in 4 x 16 lanes), ggml's flash attention with an fp16
// accumulator and SiLU's polynomial exp. The scalar level is that arithmetic written out in
// portable C++: the reference the others are tested against, bit for bit.
// Stateless function pointers; any thread. Entries receive plain views and never allocate.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/paged_attention.h"
#include "kernels/tensor_type.h"

namespace tiergate::kernels::cpu {

// One quantised matmul call, activations already quantised (quant.h's activation_type).
struct QuantMatmulView {
  DType type = DType::kQ4_1;           // weight type: Q4_0, Q4_1 or Q8_0
  const std::byte* weight = nullptr;   // [rows, w_row_bytes]
  std::size_t w_row_bytes = 0;
  std::size_t rows = 0, cols = 0;      // cols: a multiple of 32
  const std::byte* act = nullptr;      // [tokens, act_row_bytes]: Q8_1 rows for Q4_1, else Q8_0 rows
  std::size_t act_row_bytes = 0;
  const float* scales = nullptr;       // [tokens, 2 * cols / 32]: each block's d, then (Q8_1) its s
  std::size_t tokens = 0;
  const std::byte* packed = nullptr;   // what the level's pack() wrote, when pack_bytes() > 0
  float* y = nullptr;                  // [tokens, rows]
  const std::byte* packed_weight = nullptr;  // the level's pack_weight() layout of weight, or null
};

// Every query head of one KV head for one token (grouped-query attention reads the keys and values
// once for the whole group).
struct AttentionGroupJob {
  const PagedKv* kv = nullptr;
  const TokenLayout* layout = nullptr;
  std::size_t token = 0, kv_head = 0, group = 1;  // group: query heads per KV head
  const float* q = nullptr;  // [group, head_dim] this token's query heads kv_head*group ...
  float* out = nullptr;      // [group, head_dim]
  float scale = 1.0f;
  float* scratch = nullptr;  // [attention_scratch_floats(group, head_dim)]
};

constexpr std::size_t attention_scratch_floats(std::size_t group, std::size_t head_dim) {
  return 2 * group * head_dim + 2 * group + 16;
}

struct IsaKernels {
  CpuIsa isa;
  // Bytes of a level-specific re-layout of the activations (0: none) and the writer of it; run
  // once per call on the calling thread before quant_rows.
  std::size_t (*pack_bytes)(const QuantMatmulView& v);
  void (*pack)(const QuantMatmulView& v, std::byte* buffer);  // buffer: 64-byte aligned
  // y[t][r] for rows [r0, r1) and every token.
  void (*quant_rows)(const QuantMatmulView& v, std::size_t r0, std::size_t r1);
  // Float weight rows (F32, F16, BF16) against f32 activations.
  float (*dot_float)(DType type, const void* w, const float* x, std::size_t n);
  void (*attend)(const AttentionGroupJob& job);
  // out = silu(gate) * up over n.
  void (*silu_mul)(const float* gate, const float* up, float* out, std::size_t n);
  // The activation row a quantised weight type's matmul reads (quant.h's quantize_activation_row:
  // Q8_1 blocks for Q4_1, Q8_0 for Q4_0 and Q8_0) from x[n], with each block's fp16 d and s (0 for
  // Q8_0) as floats in d[n / 32] and s[n / 32]. The same bits at every level for finite x.
  void (*quantize_activations)(DType weight, const float* x, std::size_t n, std::byte* row, float* d, float* s);
  // Bytes of a level-specific re-layout of a quantised weight [rows, cols] (0: the level reads the
  // stored rows only) and the writer of it. Done once per weight, by its owner; quant_rows reads it
  // through QuantMatmulView::packed_weight where that is faster and still reads `weight` elsewhere.
  std::size_t (*weight_pack_bytes)(DType type, std::size_t rows, std::size_t cols);
  void (*pack_weight)(DType type, const std::byte* weight, std::size_t rows, std::size_t cols, std::byte* out);
};

// The table of a level compiled into this binary (TG_CHECK otherwise); the caller checks
// cpu_supports() first.
const IsaKernels& isa_kernels(CpuIsa isa);
// The table of active_isa().
const IsaKernels& active_kernels();

}  // namespace tiergate::kernels::cpu
