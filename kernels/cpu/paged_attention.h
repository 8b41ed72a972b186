// Paged attention and KV append on the CPU: the reference the CUDA kernels are tested against and
// the engine's CPU path. Work is split across (token, head) pairs on the pool.
#pragma once

#include "kernels/cpu/thread_pool.h"
#include "kernels/paged_attention.h"

namespace tiergate::kernels::cpu {

void kv_append(const KvAppendParams& p);
void paged_attention(const PagedAttentionParams& p, ThreadPool& pool);

}  // namespace tiergate::kernels::cpu
