#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/fp16.h"

namespace tiergate::kernels::cpu {
void kv_append(const KvAppendParams& p) {
  const PagedKv& kv = p.kv;
  TG_CHECK(kv.dtype == DType::kF32 || kv.dtype == DType::kF16 || kv.dtype == DType::kBF16);
  for (std::size_t t = 0; t < p.layout.num_tokens; ++t) {
    const auto seq = static_cast<std::size_t>(p.layout.token_seq[t]);
    const auto pos = static_cast<std::size_t>(p.layout.token_pos[t]);
    TG_CHECK(pos / kv.block_size < p.layout.max_blocks_per_seq);
    for (std::size_t h = 0; h < kv.num_kv_heads; ++h) {
      const std::size_t dst = kv_slot_offset(kv, p.layout, seq, pos, h);
      const float* k = p.k_new + (t * kv.num_kv_heads + h) * kv.head_dim;
      const float* v = p.v_new + (t * kv.num_kv_heads + h) * kv.head_dim;
      if (kv.dtype == DType::kF32) {
        std::copy_n(k, kv.head_dim, static_cast<float*>(kv.k) + dst);
        std::copy_n(v, kv.head_dim, static_cast<float*>(kv.v) + dst);
      } else if (kv.dtype == DType::kBF16) {
        for (std::size_t d = 0; d < kv.head_dim; ++d) {
          static_cast<std::uint16_t*>(kv.k)[dst + d] = float_to_bf16(k[d]);
          static_cast<std::uint16_t*>(kv.v)[dst + d] = float_to_bf16(v[d]);
        }
      } else {
        for (std::size_t d = 0; d < kv.head_dim; ++d) {
          static_cast<std::uint16_t*>(kv.k)[dst + d] = float_to_half(k[d]);
          static_cast<std::uint16_t*>(kv.v)[dst + d] = float_to_half(v[d]);
        }
      }
    }
  }
}

void paged_attention(const PagedAttentionParams& p, ThreadPool& pool) { paged_attention(p, pool, active_kernels()); }

void paged_attention(const PagedAttentionParams& p, ThreadPool& pool, const IsaKernels& isa) {
  const PagedKv& kv = p.kv;
  TG_CHECK(kv.num_kv_heads > 0 && p.num_heads % kv.num_kv_heads == 0);
  TG_CHECK(kv.dtype == DType::kF32 || kv.dtype == DType::kF16 || kv.dtype == DType::kBF16);
  TG_CHECK(kv.head_dim % 8 == 0 && "CPU paged attention supports head_dim multiples of 8");
  const std::size_t group = p.num_heads / kv.num_kv_heads;
  const std::size_t D = kv.head_dim;
  // One job per (token, KV head): the KV head's keys and values are read once for all the query
  // heads that share it.
  pool.parallel_for(p.layout.num_tokens * kv.num_kv_heads, [&](std::size_t begin, std::size_t end) {
    thread_local std::vector<float> scratch;
    scratch.resize(attention_scratch_floats(group, D));
    for (std::size_t job = begin; job < end; ++job) {
      const std::size_t t = job / kv.num_kv_heads, kvh = job % kv.num_kv_heads;
      const std::size_t first = (t * p.num_heads + kvh * group) * D;
      isa.attend({&kv, &p.layout, t, kvh, group, p.q + first, p.out + first, p.scale, scratch.data()});
    }
  });
}

}  // namespace tiergate::kernels::cpu
