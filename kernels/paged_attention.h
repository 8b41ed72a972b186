// Parameters of paged attention and KV append, shared by kernels/cpu and kernels/cuda. Plain,
// non-owning views (the model of flashinfer's paged_kv_t): the engine owns the memory.
//
// One layer's KV cache is a pool of blocks; a sequence's keys live in the blocks its block table
// names, token p of the sequence at slot p % block_size of block table[p / block_size].
// Every query token attends causally to keys 0..position of its own sequence, which covers decode
// (one token per sequence) and chunked prefill over cached prefix blocks with one kernel.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/check.h"
#include "kernels/tensor_type.h"

namespace tiergate::kernels {

struct PagedKv {
  void* k = nullptr;  // [num_blocks, block_size, num_kv_heads, head_dim] in dtype
  void* v = nullptr;  // [num_blocks, block_size, num_kv_heads, head_dim] in dtype
  DType dtype = DType::kF16;  // F32, F16 or BF16 on the CPU; F16 or BF16 on the GPU
  std::size_t num_blocks = 0;
  std::size_t block_size = 0;
  std::size_t num_kv_heads = 0;
  std::size_t head_dim = 0;
};

struct TokenLayout {
  const std::int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  std::size_t max_blocks_per_seq = 0;
  const std::int32_t* token_seq = nullptr;     // [num_tokens] row of block_tables for each token
  const std::int32_t* token_pos = nullptr;     // [num_tokens] absolute position in its sequence
  std::size_t num_tokens = 0;
};

// Writes the step's new keys and values into their slots.
struct KvAppendParams {
  PagedKv kv;
  TokenLayout layout;
  const float* k_new = nullptr;  // [num_tokens, num_kv_heads, head_dim]
  const float* v_new = nullptr;  // [num_tokens, num_kv_heads, head_dim]
};

struct PagedAttentionParams {
  PagedKv kv;
  TokenLayout layout;
  const float* q = nullptr;  // [num_tokens, num_heads, head_dim]
  float* out = nullptr;      // [num_tokens, num_heads, head_dim]
  std::size_t num_heads = 0; // a multiple of num_kv_heads (grouped-query attention)
  float scale = 1.0f;        // usually 1 / sqrt(head_dim)
};

// Element offset of token `pos` of sequence row `seq`, KV head `kv_head`, in a K or V pool.
// `static`: every translation unit that uses it (each CPU ISA level's among them) keeps its own
// copy, so the linker never hands one compiled with one level's flags to another.
static inline std::size_t kv_slot_offset(const PagedKv& kv, const TokenLayout& layout, std::size_t seq,
                                         std::size_t pos, std::size_t kv_head) {
  const std::int32_t block = layout.block_tables[seq * layout.max_blocks_per_seq + pos / kv.block_size];
  TG_CHECK(block >= 0 && static_cast<std::size_t>(block) < kv.num_blocks);
  return ((static_cast<std::size_t>(block) * kv.block_size + pos % kv.block_size) * kv.num_kv_heads + kv_head) *
         kv.head_dim;
}

}  // namespace tiergate::kernels
