// The KV memory: for every layer, key and value pools of num_blocks blocks of block_size tokens
// (the layout of kernels::PagedKv), in F16 (the default: half the memory, and the CPU attention
// kernel then computes llama.cpp's flash-attention recurrence to the bit) or F32. The BlockManager decides which block holds what; this
// class only owns the bytes. Engine-thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/model.h"
#include "kernels/paged_attention.h"

namespace tiergate::engine {

class KvCache {
 public:
  KvCache(const ModelConfig& config, std::size_t num_blocks, std::size_t block_size,
          kernels::DType dtype = kernels::DType::kF16);

  static std::size_t bytes_per_block(const ModelConfig& config, std::size_t block_size,
                                     kernels::DType dtype = kernels::DType::kF16);
  std::size_t num_blocks() const { return num_blocks_; }
  std::size_t block_size() const { return block_size_; }
  std::size_t bytes() const { return k_.size() + v_.size(); }

  kernels::PagedKv layer(std::size_t layer);
  // Copies one block's keys and values in every layer (copy-on-write).
  void copy_block(std::int32_t from, std::int32_t to);

 private:
  std::size_t num_blocks_, block_size_, layers_, block_elems_;  // block_elems_: per layer, K or V
  std::size_t kv_heads_, head_dim_;
  kernels::DType dtype_;
  std::size_t element_bytes_;
  std::vector<std::byte> k_, v_;  // [layers, num_blocks, block_size, kv_heads, head_dim]
};

}  // namespace tiergate::engine
