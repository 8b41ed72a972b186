// Paged attention and KV append on the CPU: the reference the CUDA kernels are tested against and
// the engine's CPU path. Work is split across (token, KV head) pairs on the pool, each reading its
// keys and values once for every query head of the group; the arithmetic is the ISA levels'
// (isa_kernels.h), the same bits at every level.
#pragma once

#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/paged_attention.h"

namespace tiergate::kernels::cpu {

void kv_append(const KvAppendParams& p);
void paged_attention(const PagedAttentionParams& p, ThreadPool& pool);  // at active_isa()
void paged_attention(const PagedAttentionParams& p, ThreadPool& pool, const IsaKernels& isa);

}  // namespace tiergate::kernels::cpu
