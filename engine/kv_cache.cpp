#include "engine/kv_cache.h"

#include <algorithm>

#include "kernels/check.h"

namespace tiergate::engine {

KvCache::KvCache(const ModelConfig& c, std::size_t num_blocks, std::size_t block_size, kernels::DType dtype)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      layers_(c.layers),
      block_elems_(block_size * c.kv_heads * c.head_dim),
      kv_heads_(c.kv_heads),
      head_dim_(c.head_dim),
      dtype_(dtype),
      element_bytes_(kernels::block_bytes(dtype)),
      k_(c.layers * num_blocks * block_elems_ * element_bytes_),
      v_(c.layers * num_blocks * block_elems_ * element_bytes_) {
  TG_CHECK(dtype == kernels::DType::kF32 || dtype == kernels::DType::kF16);
}

std::size_t KvCache::bytes_per_block(const ModelConfig& c, std::size_t block_size, kernels::DType dtype) {
  return 2 * c.layers * block_size * c.kv_heads * c.head_dim * kernels::block_bytes(dtype);
}

kernels::PagedKv KvCache::layer(std::size_t layer) {
  TG_CHECK(layer < layers_);
  const std::size_t offset = layer * num_blocks_ * block_elems_ * element_bytes_;
  return kernels::PagedKv{k_.data() + offset, v_.data() + offset, dtype_, num_blocks_, block_size_, kv_heads_, head_dim_};
}

void KvCache::copy_block(std::int32_t from, std::int32_t to) {
  TG_CHECK(from >= 0 && to >= 0 && static_cast<std::size_t>(from) < num_blocks_ &&
           static_cast<std::size_t>(to) < num_blocks_);
  const std::size_t block_bytes = block_elems_ * element_bytes_;
  for (std::size_t l = 0; l < layers_; ++l) {
    const std::size_t base = l * num_blocks_ * block_bytes;
    const std::size_t src = base + static_cast<std::size_t>(from) * block_bytes;
    const std::size_t dst = base + static_cast<std::size_t>(to) * block_bytes;
    std::copy_n(k_.begin() + static_cast<long>(src), block_bytes, k_.begin() + static_cast<long>(dst));
    std::copy_n(v_.begin() + static_cast<long>(src), block_bytes, v_.begin() + static_cast<long>(dst));
  }
}

}  // namespace tiergate::engine
